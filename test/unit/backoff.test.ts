/**
 * Reconnect backoff: doubling from 100 ms with jitter, capped at 10 s by
 * default (the cap bounds the stall after a broker dies beyond the metadata
 * session timeout; docs/decisions.md).
 */
import { describe, expect, test } from 'vitest';
import { Backoff } from '../../src/transport/pulsar/backoff.js';

describe('Backoff', () => {
  test('doubles from 100 ms, each wait between half its ceiling and the ceiling, never past 10 s', () => {
    const backoff = new Backoff();
    const waits = Array.from({ length: 20 }, () => backoff.next());
    waits.forEach((wait, attempt) => {
      const ceiling = Math.min(10_000, 100 * 2 ** attempt);
      expect(wait).toBeGreaterThanOrEqual(ceiling / 2);
      expect(wait).toBeLessThanOrEqual(ceiling);
    });
    // 30 s of failed reconnects (a dead broker's metadata session) are followed by a try within 10 s.
    let elapsed = 0;
    const fresh = new Backoff();
    while (elapsed < 30_000) elapsed += fresh.next();
    expect(elapsed).toBeLessThanOrEqual(40_000);
  });

  test('reset starts again from the shortest wait', () => {
    const backoff = new Backoff(100, 1000);
    for (let i = 0; i < 10; i++) backoff.next();
    backoff.reset();
    expect(backoff.next()).toBeLessThanOrEqual(100);
  });
});
