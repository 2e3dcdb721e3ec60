/**
 * Per-task retry decisions: exponential backoff with jitter, with Infinitic's
 * option names and defaults. Each task follows its own schedule, counted by
 * its own `retryIndex`, whatever batch it ran in.
 *
 *   delay(retryIndex) = min(maximumSeconds, minimumSeconds × backoffCoefficient^retryIndex)
 *                       × (1 + randomFactor × (2 × random() − 1))
 */
import { BatchContractError, NonRetryableError } from '../errors.js';

export interface RetryOptions {
  readonly minimumSeconds: number;
  readonly maximumSeconds: number;
  readonly backoffCoefficient: number;
  readonly randomFactor: number;
  readonly maximumRetries: number;
  /** Error names that are never retried (the task fails at once). */
  readonly ignoredErrors: readonly string[];
}

export const DEFAULT_RETRY: RetryOptions = {
  minimumSeconds: 1,
  maximumSeconds: 1000,
  backoffCoefficient: 2,
  randomFactor: 0.5,
  maximumRetries: 11,
  ignoredErrors: [],
};

export type RetryDecision =
  { readonly retry: true; readonly delayMs: number } | { readonly retry: false; readonly reason: 'nonRetryable' | 'retriesExhausted' };

export class RetryPolicy {
  private readonly ignored: ReadonlySet<string>;

  constructor(
    readonly options: RetryOptions,
    private readonly random: () => number = Math.random,
  ) {
    this.ignored = new Set(options.ignoredErrors);
  }

  /** What to do after the execution with `retryIndex` failed with `error`. */
  decide(error: unknown, retryIndex: number): RetryDecision {
    if (!this.isRetryable(error)) return { retry: false, reason: 'nonRetryable' };
    if (retryIndex >= this.options.maximumRetries) return { retry: false, reason: 'retriesExhausted' };
    return { retry: true, delayMs: this.delayMs(retryIndex) };
  }

  delayMs(retryIndex: number): number {
    const { minimumSeconds, maximumSeconds, backoffCoefficient, randomFactor } = this.options;
    const base = Math.min(maximumSeconds, minimumSeconds * backoffCoefficient ** retryIndex);
    const jitter = 1 + randomFactor * (2 * this.random() - 1);
    return Math.max(0, Math.round(base * jitter * 1000));
  }

  private isRetryable(error: unknown): boolean {
    if (error instanceof NonRetryableError) return false;
    // A batch method that returns the wrong shape is a programming error: running it again gives the same.
    if (error instanceof BatchContractError) return false;
    if (error instanceof Error && this.ignored.has(error.name)) return false;
    return true;
  }
}
