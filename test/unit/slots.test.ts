import { describe, expect, test } from 'vitest';
import { Slots } from '../../src/worker/slots.js';

/** Acquires and records when each acquire started. */
function tracker(slots: Slots) {
  const started: string[] = [];
  const acquire = (name: string, key: string | null): Promise<void> => slots.acquire(key).then((took) => void (took && started.push(name)));
  return { started, acquire };
}

describe('Slots', () => {
  test('at most size at once; waiters start in order as slots free', async () => {
    const slots = new Slots(2);
    const { started, acquire } = tracker(slots);
    const all = [acquire('a', 'x'), acquire('b', 'y'), acquire('c', 'z'), acquire('d', 'w')];
    await Promise.resolve();
    expect(started).toEqual(['a', 'b']);
    expect(slots.inUse).toBe(2);
    slots.release('x');
    slots.release('y');
    await Promise.all(all);
    expect(started).toEqual(['a', 'b', 'c', 'd']);
  });

  test('one key never takes more than perKey slots; other keys pass its waiters', async () => {
    const slots = new Slots(4, 3);
    const { started, acquire } = tracker(slots);
    const hung = [1, 2, 3, 4, 5].map((i) => acquire(`hung${i}`, 'hung'));
    await Promise.resolve();
    expect(started).toEqual(['hung1', 'hung2', 'hung3']);
    // hung4 and hung5 wait for a slot of their key; another key takes the free slot at once.
    await acquire('other1', 'other');
    expect(started).toEqual(['hung1', 'hung2', 'hung3', 'other1']);
    // A freed slot of another key goes to the next waiter that may run: not a hung one while its key is full.
    const other2 = acquire('other2', 'other');
    slots.release('other');
    await other2;
    expect(started.at(-1)).toBe('other2');
    // When the hung key frees a slot, its own waiter takes it.
    slots.release('hung');
    await hung[3];
    expect(started.at(-1)).toBe('hung4');
    expect(slots.inUse).toBe(4);
  });

  test('saturated: a key that runs perKey executions, whatever the free slots', async () => {
    const slots = new Slots(3, 2);
    void Promise.all([1, 2, 3].map(() => slots.acquire('hung')));
    void slots.acquire('other');
    await Promise.resolve();
    expect([slots.saturated('hung'), slots.saturated('other'), slots.saturated('idle')]).toEqual([true, false, false]);
    expect(slots.inUse).toBe(3);
    slots.release('hung'); // its own waiter takes the slot: still saturated
    expect(slots.saturated('hung')).toBe(true);
  });

  test('withdraw gives back the waiters of the keys it names; their acquire resolves false', async () => {
    const slots = new Slots(2, 1);
    const running = slots.acquire('hung');
    const waiting = [slots.acquire('hung'), slots.acquire('hung')];
    const other = slots.acquire('other');
    expect([...slots.waitingKeys()]).toEqual(['hung']);
    expect(slots.withdraw((key) => key === 'hung')).toBe(2);
    expect(await Promise.all([running, ...waiting, other])).toEqual([true, false, false, true]);
    expect(slots.waitingKeys().size).toBe(0);
    expect(slots.runningFor('hung')).toBe(1);
  });

  test('a key with nothing running leaves no state behind', () => {
    const slots = new Slots(2, 1);
    void slots.acquire('k');
    slots.release('k');
    expect(slots.inUse).toBe(0);
    expect((slots as unknown as { runningByKey: Map<unknown, unknown> }).runningByKey.size).toBe(0);
  });
});
