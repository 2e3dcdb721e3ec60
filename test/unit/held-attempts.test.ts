import { describe, expect, test } from 'vitest';
import { HeldAttempts } from '../../src/worker/held-attempts.js';
import type { ReceivedMessage } from '../../src/transport/transport.js';

const attempt = (taskId: string, retryIndex = 0) => ({ taskId, retryIndex, retrySequence: 0 });
const message = (id: string): ReceivedMessage => ({
  id,
  topic: 't',
  payload: new Uint8Array(),
  key: undefined,
  properties: {},
  redeliveryCount: 0,
  publishTime: 0,
});

describe('HeldAttempts', () => {
  test('a copy of a held attempt waits for it; release hands the copies over once and forgets the attempt', () => {
    const held = new HeldAttempts();
    expect(held.hold(attempt('t'), message('m1'))).toBe(true);
    expect(held.hold(attempt('t'), message('m2'))).toBe(false);
    expect(held.hold(attempt('t'), message('m3'))).toBe(false);
    expect(held.release(attempt('t')).map((m) => m.id)).toEqual(['m2', 'm3']);
    expect(held.release(attempt('t'))).toEqual([]);
    expect(held.size).toBe(0);
    expect(held.hold(attempt('t'), message('m4'))).toBe(true); // settled: a later copy is the settled cache's business
  });

  test('another attempt of a held task is not a copy; releasing it leaves the held one alone', () => {
    const held = new HeldAttempts();
    held.hold(attempt('t', 0), message('m1'));
    expect(held.hold(attempt('t', 1), message('m2'))).toBe(true);
    expect(held.hold({ ...attempt('t', 0), isolation: { group: 'g', size: 2, step: 1 } }, message('m3'))).toBe(true);
    expect(held.release(attempt('t', 1))).toEqual([]);
    expect(held.size).toBe(1);
  });
});
