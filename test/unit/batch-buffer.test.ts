import { describe, expect, test } from 'vitest';
import { BatchBuffer, type BatchLimits, type FlushedBatch } from '../../src/worker/batch-buffer.js';
import { LifecycleError } from '../../src/errors.js';
import { ManualClock } from '../support/manual-clock.js';

interface Item {
  readonly id: string;
  readonly bytes: number;
}

function setup(limits: Partial<BatchLimits> = {}) {
  const clock = new ManualClock();
  const flushed: FlushedBatch<Item>[] = [];
  const buffer = new BatchBuffer<Item>(
    { maxMessages: 3, maxSeconds: 1, maxBytes: undefined, ...limits },
    (batch) => flushed.push(batch),
    clock,
  );
  return { clock, flushed, buffer };
}

const item = (id: string, bytes = 10): Item => ({ id, bytes });
const ids = (b: FlushedBatch<Item>) => b.items.map((i) => i.id);

describe('BatchBuffer', () => {
  test('flushes with reason maxMessages when an aggregate is full', () => {
    const { buffer, flushed, clock } = setup();
    buffer.add({ method: 'send', batchKey: 'a' }, item('1'));
    buffer.add({ method: 'send', batchKey: 'a' }, item('2'));
    expect(flushed).toHaveLength(0);
    buffer.add({ method: 'send', batchKey: 'a' }, item('3'));
    expect(flushed).toHaveLength(1);
    expect(flushed[0]!.reason).toBe('maxMessages');
    expect(ids(flushed[0]!)).toEqual(['1', '2', '3']);
    expect(buffer.openAggregates).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  test('an isolation group is batched apart from its key and flushed with reason isolated once all its tasks are in', () => {
    const { buffer, flushed } = setup({ maxMessages: 10 });
    const group = { method: 'send', batchKey: 'a', isolation: { id: 'g1', size: 2 } };
    buffer.add({ method: 'send', batchKey: 'a' }, item('ordinary'));
    buffer.add(group, item('1'));
    expect(buffer.openAggregates).toBe(2);
    buffer.add(group, item('2'));
    expect(flushed.map((b) => [b.reason, ids(b)])).toEqual([['isolated', ['1', '2']]]);
    expect(flushed[0]!.group.isolation).toEqual({ id: 'g1', size: 2 });
    expect(buffer.openAggregates).toBe(1);
  });

  test('flushFullest flushes the fullest aggregates with reason backpressure, cancelling their timers', () => {
    const { buffer, flushed, clock } = setup({ maxMessages: 10 });
    for (const [key, n] of [
      ['a', 1],
      ['b', 3],
      ['c', 2],
    ] as const) {
      for (let i = 0; i < n; i++) buffer.add({ method: 'send', batchKey: key }, item(`${key}${i}`));
    }
    expect(buffer.flushFullest(2)).toBe(2);
    expect(flushed.map((b) => [b.group.batchKey, b.reason, b.items.length])).toEqual([
      ['b', 'backpressure', 3],
      ['c', 'backpressure', 2],
    ]);
    expect(buffer.openAggregates).toBe(1);
    expect(buffer.bufferedItems).toBe(1);
    expect(clock.pendingTimers).toBe(1);
    expect(buffer.flushFullest(5)).toBe(1);
    expect(buffer.flushFullest(5)).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  test('flushFullest passes over the groups it is told are not eligible', () => {
    const { buffer, flushed } = setup({ maxMessages: 10 });
    for (const [key, n] of [
      ['busy', 4],
      ['a', 2],
      ['b', 1],
    ] as const) {
      for (let i = 0; i < n; i++) buffer.add({ method: 'send', batchKey: key }, item(`${key}${i}`));
    }
    expect(buffer.flushFullest(2, (group) => group.batchKey !== 'busy')).toBe(2);
    expect(flushed.map((b) => b.group.batchKey)).toEqual(['a', 'b']);
    expect(buffer.flushFullest(2, (group) => group.batchKey !== 'busy')).toBe(0);
    expect(buffer.openAggregates).toBe(1);
  });

  test('flushes with reason maxSeconds exactly maxSeconds after the first task', () => {
    const { buffer, flushed, clock } = setup({ maxSeconds: 2 });
    const start = clock.now();
    buffer.add({ method: 'send', batchKey: 'a' }, item('1'));
    clock.advance(1500);
    buffer.add({ method: 'send', batchKey: 'a' }, item('2'));
    clock.advance(499);
    expect(flushed).toHaveLength(0);
    clock.advance(1);
    expect(flushed).toHaveLength(1);
    expect(flushed[0]!.reason).toBe('maxSeconds');
    expect(flushed[0]!.openedAt).toBe(start);
    expect(flushed[0]!.flushedAt - flushed[0]!.openedAt).toBe(2000);
  });

  test('no task waits longer than maxSeconds, whatever the mix of keys', () => {
    const { buffer, flushed, clock } = setup({ maxMessages: 5, maxSeconds: 1 });
    const arrivedAt = new Map<string, number>();
    // A deterministic pseudo-random mix of 20 keys, tasks arriving every 7 ms.
    let seed = 42;
    for (let i = 0; i < 2000; i++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      const key = `k${seed % 20}`;
      const id = `t${i}`;
      arrivedAt.set(id, clock.now());
      buffer.add({ method: 'send', batchKey: key }, item(id));
      clock.advance(7);
    }
    clock.advance(1000);
    const seen = flushed.flatMap((b) => b.items.map((i) => ({ id: i.id, waited: b.flushedAt - arrivedAt.get(i.id)! })));
    expect(seen).toHaveLength(2000);
    expect(Math.max(...seen.map((s) => s.waited))).toBeLessThanOrEqual(1000);
    expect(new Set(flushed.map((b) => b.reason))).toEqual(new Set(['maxMessages', 'maxSeconds']));
  });

  test('never mixes methods or batch keys; null and empty batch keys are different groups', () => {
    const { buffer, flushed } = setup({ maxMessages: 2 });
    const groups = [
      { method: 'send', batchKey: 'a' },
      { method: 'send', batchKey: 'b' },
      { method: 'other', batchKey: 'a' },
      { method: 'send', batchKey: null },
      { method: 'send', batchKey: '' },
    ];
    for (let i = 0; i < 10; i++) buffer.add(groups[i % groups.length]!, item(`${i % groups.length}:${i}`));
    expect(flushed).toHaveLength(5);
    for (const batch of flushed) {
      expect(new Set(batch.items.map((i) => i.id.split(':')[0])).size).toBe(1);
    }
    expect(flushed.map((b) => JSON.stringify(b.group)).sort()).toEqual(groups.map((g) => JSON.stringify(g)).sort());
  });

  test('maxBytes: the task that would pass the limit opens the next aggregate', () => {
    const { buffer, flushed } = setup({ maxMessages: 100, maxBytes: 100 });
    const g = { method: 'send', batchKey: 'a' };
    buffer.add(g, item('1', 40));
    buffer.add(g, item('2', 40));
    buffer.add(g, item('3', 40));
    expect(flushed).toHaveLength(1);
    expect(flushed[0]!.reason).toBe('maxBytes');
    expect(ids(flushed[0]!)).toEqual(['1', '2']);
    expect(flushed[0]!.bytes).toBe(80);
    expect(buffer.bufferedItems).toBe(1);
  });

  test('maxBytes: an aggregate that reaches the limit exactly is flushed at once', () => {
    const { buffer, flushed } = setup({ maxMessages: 100, maxBytes: 100 });
    const g = { method: 'send', batchKey: 'a' };
    buffer.add(g, item('1', 60));
    buffer.add(g, item('2', 40));
    expect(flushed.map((b) => [b.reason, ids(b)])).toEqual([['maxBytes', ['1', '2']]]);
  });

  test('maxBytes: a single task larger than maxBytes forms a batch of its own', () => {
    const { buffer, flushed } = setup({ maxMessages: 100, maxBytes: 100 });
    const g = { method: 'send', batchKey: 'a' };
    buffer.add(g, item('small', 10));
    buffer.add(g, item('huge', 500));
    buffer.add(g, item('after', 10));
    expect(flushed.map((b) => [b.reason, ids(b)])).toEqual([
      ['maxBytes', ['small']],
      ['maxBytes', ['huge']],
    ]);
    expect(buffer.bufferedItems).toBe(1);
  });

  test('close() flushes every open aggregate with reason shutdown, then refuses tasks', () => {
    const { buffer, flushed, clock } = setup();
    buffer.add({ method: 'send', batchKey: 'a' }, item('1'));
    buffer.add({ method: 'send', batchKey: 'b' }, item('2'));
    buffer.close();
    expect(flushed.map((b) => b.reason)).toEqual(['shutdown', 'shutdown']);
    expect(clock.pendingTimers).toBe(0);
    expect(() => buffer.add({ method: 'send', batchKey: 'a' }, item('3'))).toThrow(LifecycleError);
  });

  test('idle keys leave no state behind: 10,000 keys, then nothing open and no timers', () => {
    const { buffer, flushed, clock } = setup({ maxMessages: 10, maxSeconds: 1 });
    for (let i = 0; i < 10_000; i++) buffer.add({ method: 'send', batchKey: `key-${i}` }, item(`${i}`));
    expect(buffer.openAggregates).toBe(10_000);
    clock.advance(1000);
    expect(flushed).toHaveLength(10_000);
    expect(buffer.openAggregates).toBe(0);
    expect(buffer.bufferedItems).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });
});
