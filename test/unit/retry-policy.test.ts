import { describe, expect, test } from 'vitest';
import { DEFAULT_RETRY, RetryPolicy } from '../../src/worker/retry-policy.js';
import { BatchContractError, NonRetryableError } from '../../src/errors.js';

describe('RetryPolicy', () => {
  test("defaults are Infinitic's: 1 s, 1000 × minimum, coefficient 2, random factor 0.5, 11 retries", () => {
    expect(DEFAULT_RETRY).toMatchObject({
      minimumSeconds: 1,
      maximumSeconds: 1000,
      backoffCoefficient: 2,
      randomFactor: 0.5,
      maximumRetries: 11,
    });
  });

  test('delays grow exponentially and are capped at maximumSeconds', () => {
    const policy = new RetryPolicy({ ...DEFAULT_RETRY, randomFactor: 0, maximumSeconds: 10 }, () => 0.5);
    expect([0, 1, 2, 3, 4, 5].map((i) => policy.delayMs(i))).toEqual([1000, 2000, 4000, 8000, 10000, 10000]);
  });

  test('jitter stays within ± randomFactor of the base delay', () => {
    const low = new RetryPolicy(DEFAULT_RETRY, () => 0);
    const high = new RetryPolicy(DEFAULT_RETRY, () => 0.999999);
    expect(low.delayMs(2)).toBe(2000); // 4 s × (1 − 0.5)
    expect(high.delayMs(2)).toBe(6000); // 4 s × (1 + 0.5), rounded
  });

  test('retries until maximumRetries, then reports retriesExhausted', () => {
    const policy = new RetryPolicy({ ...DEFAULT_RETRY, maximumRetries: 2 });
    expect(policy.decide(new Error('x'), 0).retry).toBe(true);
    expect(policy.decide(new Error('x'), 1).retry).toBe(true);
    expect(policy.decide(new Error('x'), 2)).toEqual({ retry: false, reason: 'retriesExhausted' });
  });

  test('NonRetryableError and ignoredErrors are never retried', () => {
    class QuotaExceeded extends Error {
      override name = 'QuotaExceeded';
    }
    const policy = new RetryPolicy({ ...DEFAULT_RETRY, ignoredErrors: ['QuotaExceeded'] });
    expect(policy.decide(new NonRetryableError('no'), 0)).toEqual({ retry: false, reason: 'nonRetryable' });
    expect(policy.decide(new QuotaExceeded('no'), 0)).toEqual({ retry: false, reason: 'nonRetryable' });
    expect(policy.decide(new TypeError('yes'), 0).retry).toBe(true);
  });

  test('a batch method that returned the wrong shape is not retried: it would return it again', () => {
    const policy = new RetryPolicy(DEFAULT_RETRY);
    expect(policy.decide(new BatchContractError('S.runMany', 'must return a Map'), 0)).toEqual({ retry: false, reason: 'nonRetryable' });
  });
});
