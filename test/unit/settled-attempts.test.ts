import { describe, expect, test } from 'vitest';
import { SettledAttempts } from '../../src/worker/settled-attempts.js';
import { ManualClock } from '../support/manual-clock.js';

const attempt = (taskId: string, retryIndex = 0, retrySequence = 0) => ({ taskId, retryIndex, retrySequence });

describe('SettledAttempts', () => {
  test('an attempt is settled once it or a later one of its task was; a retry or a replay is a new attempt', () => {
    const cache = new SettledAttempts(100, 60_000, new ManualClock());
    cache.add(attempt('t', 1));
    expect(cache.settled(attempt('t', 1))).toBe(true);
    expect(cache.settled(attempt('t', 0))).toBe(true); // an older copy is stale
    expect(cache.settled(attempt('t', 2))).toBe(false); // the next retry
    expect(cache.settled(attempt('t', 0, 1))).toBe(false); // a dead-letter replay
    cache.add(attempt('t', 0)); // a stale copy settled late does not make the task younger
    expect(cache.settled(attempt('t', 1))).toBe(true);
    expect(cache.settled(attempt('u', 0))).toBe(false);
  });

  test('an isolation retry is a new attempt of the same retry index; a copy of it is a twin', () => {
    const cache = new SettledAttempts(100, 60_000, new ManualClock());
    const isolated = (step: number) => ({ ...attempt('t', 0), isolation: { group: 'g', size: 2, step } });
    cache.add(attempt('t', 0)); // the batch that failed as a whole
    expect(cache.settled(isolated(1))).toBe(false);
    cache.add(isolated(1));
    expect(cache.settled(isolated(1))).toBe(true);
    expect(cache.settled(isolated(2))).toBe(false);
    // The poison's next retry (alone, step 0) comes after every split of the retry before it.
    expect(cache.settled({ ...attempt('t', 1), isolation: { group: 'h', size: 1, step: 0 } })).toBe(false);
  });

  test('remembers at most maxTasks task ids, forgetting the oldest first', () => {
    const cache = new SettledAttempts(3, 60_000, new ManualClock());
    for (const id of ['a', 'b', 'c', 'd']) cache.add(attempt(id));
    expect(cache.size).toBe(3);
    expect(['a', 'b', 'c', 'd'].map((id) => cache.settled(attempt(id)))).toEqual([false, true, true, true]);
  });

  test('forgets attempts older than maxSeconds', () => {
    const clock = new ManualClock();
    const cache = new SettledAttempts(100, 1000, clock);
    cache.add(attempt('old'));
    clock.advance(600);
    cache.add(attempt('new'));
    clock.advance(500);
    expect(cache.settled(attempt('old'))).toBe(false);
    expect(cache.settled(attempt('new'))).toBe(true);
    expect(cache.size).toBe(1);
  });

  test('a task id settled again counts from its latest settlement, for the bound and for the age', () => {
    const clock = new ManualClock();
    const cache = new SettledAttempts(2, 1000, clock);
    cache.add(attempt('a'));
    cache.add(attempt('b'));
    clock.advance(600);
    for (let i = 1; i <= 10; i++) cache.add(attempt('a', i)); // 'a' is now the youngest, whatever its older records
    cache.add(attempt('c')); // over the bound: 'b' is the oldest to go
    expect(['a', 'b', 'c'].map((id) => cache.settled(attempt(id)))).toEqual([true, false, true]);
    clock.advance(500); // 'a' was settled 500 ms ago, not 1,100
    expect(cache.settled(attempt('a', 10))).toBe(true);
    expect(cache.size).toBe(2);
  });

  test('two copies of one attempt settled on two workers: only the next attempt in the lowest group runs', () => {
    const cache = new SettledAttempts(100, 60_000, new ManualClock());
    const next = (group: string) => ({ ...attempt('t', 1), isolation: { group, size: 1, step: 0 } });
    cache.add(attempt('t', 0), 'group-b'); // this worker's copy, and the next attempt it published
    expect(cache.settled(next('group-b'))).toBe(false); // no fork known: it runs
    cache.addShared(['t', 0, 0, 0, 'group-a']); // the other worker ran a copy too
    expect(cache.settled(next('group-b'))).toBe(true); // the later group's next attempt is a twin
    expect(cache.settled(next('group-a'))).toBe(false); // the lowest runs, on whichever worker gets it
    expect(cache.settled(next('group-c'))).toBe(false); // a group nobody announced is not judged
    // Once the next attempt is settled, it is the task's latest, as before.
    cache.add(next('group-a'));
    expect(cache.settled(next('group-b'))).toBe(true);
    expect(cache.settled({ ...attempt('t', 2), isolation: { group: 'group-z', size: 1, step: 0 } })).toBe(false);
  });

  test('a next group announced for an older attempt than the latest known does not count', () => {
    const cache = new SettledAttempts(100, 60_000, new ManualClock());
    cache.add(attempt('t', 1), 'group-b');
    cache.addShared(['t', 0, 0, 0, 'group-a']); // late news of attempt 0
    expect(cache.settled({ ...attempt('t', 2), isolation: { group: 'group-b', size: 1, step: 0 } })).toBe(false);
  });
});
