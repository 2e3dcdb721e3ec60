import { describe, expect, test } from 'vitest';
import { SettledAttempts, attemptOf } from '../../src/worker/settled-attempts.js';
import { ManualClock } from '../support/manual-clock.js';

describe('SettledAttempts', () => {
  test('an attempt is its task id, retry sequence and retry index: a retry is a new attempt', () => {
    const first = attemptOf({ taskId: 't', retrySequence: 0, retryIndex: 0 });
    expect(attemptOf({ taskId: 't', retrySequence: 0, retryIndex: 0 })).toBe(first);
    expect(attemptOf({ taskId: 't', retrySequence: 0, retryIndex: 1 })).not.toBe(first);
    expect(attemptOf({ taskId: 't', retrySequence: 1, retryIndex: 0 })).not.toBe(first);
  });

  test('remembers at most maxTasks attempts, forgetting the oldest first', () => {
    const cache = new SettledAttempts(3, 60_000, new ManualClock());
    for (const a of ['a', 'b', 'c', 'd']) cache.add(a);
    expect(cache.size).toBe(3);
    expect(['a', 'b', 'c', 'd'].map((a) => cache.has(a))).toEqual([false, true, true, true]);
  });

  test('forgets attempts older than maxSeconds', () => {
    const clock = new ManualClock();
    const cache = new SettledAttempts(100, 1000, clock);
    cache.add('old');
    clock.advance(600);
    cache.add('new');
    clock.advance(500);
    expect(cache.has('old')).toBe(false);
    expect(cache.has('new')).toBe(true);
    expect(cache.size).toBe(1);
  });
});
