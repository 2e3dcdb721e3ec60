import { LifecycleError, ResultTimeoutError, TaskFailedError } from '../errors.js';
import { abortError } from '../transport/transport.js';
import { deferred, type Deferred } from '../util/deferred.js';
import { fromErrorInfo } from '../wire/error-info.js';
import type { ResultEnvelope } from '../wire/envelopes.js';

/** A dispatched task: its id now, its result when it settles. */
export interface TaskHandle<R> {
  readonly id: string;
  readonly serviceName: string;
  readonly methodName: string;
  /**
   * Resolves with the task's result; rejects with `TaskFailedError` once it
   * finally failed, with `ResultTimeoutError` (a `TaskTimeoutError`) after
   * `timeoutMs` (default: the client's `defaultResultTimeoutSeconds`), or with
   * an `AbortError` when `signal` aborts. A timeout or abort does not cancel
   * the task; after a timeout the client forgets it and ignores its result.
   */
  result(options?: ResultOptions): Promise<R>;
}

/** How long `result()` waits. */
export interface ResultOptions {
  /** Give up after this many milliseconds. */
  readonly timeoutMs?: number;
  /** Give up when this aborts. */
  readonly signal?: AbortSignal;
}

/** The handle of a task dispatched with `fireAndForget: true`: no result ever comes back. */
export class FireAndForgetHandle implements TaskHandle<never> {
  constructor(
    readonly id: string,
    readonly serviceName: string,
    readonly methodName: string,
  ) {}

  result(): Promise<never> {
    return Promise.reject(
      new LifecycleError(
        `task ${this.serviceName}.${this.methodName} (${this.id}) was dispatched with fireAndForget: no result comes back`,
      ),
    );
  }
}

/** @internal The client's record of a task it waits for. */
export class PendingTask<R = unknown> implements TaskHandle<R> {
  private readonly outcome: Deferred<R> = deferred<R>();

  constructor(
    readonly id: string,
    readonly serviceName: string,
    readonly methodName: string,
    /** When the client stops waiting by default (epoch ms), or Infinity. Checked by the client's one timer. */
    readonly deadline: number,
    /** The client's (shared) way to forget a task it stopped waiting for. */
    private readonly forget: (task: PendingTask) => void,
  ) {
    // The result may never be asked for: a failure must not then surface as an unhandled rejection.
    this.outcome.promise.catch(() => undefined);
  }

  result(options: ResultOptions = {}): Promise<R> {
    const { timeoutMs, signal } = options;
    // The default wait needs nothing per call: the client's one timer expires the task at its deadline.
    if (timeoutMs === undefined && !signal) return this.outcome.promise;
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise<R>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(abortError(signal!));
      };
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          signal?.removeEventListener('abort', onAbort);
          this.expire(timeoutMs);
          this.outcome.promise.catch(reject);
        }, timeoutMs);
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.outcome.promise.then(
        (value) => {
          done();
          resolve(value);
        },
        (error: unknown) => {
          done();
          reject(error);
        },
      );
    });
  }

  /** Stops waiting for good: every caller of result() gets a ResultTimeoutError, and the client forgets the task. */
  expire(waitedMs: number): void {
    this.outcome.reject(new ResultTimeoutError(this.id, this.serviceName, this.methodName, waitedMs));
    this.forget(this);
  }

  settle(result: ResultEnvelope): void {
    if (result.outcome === 'succeeded') {
      this.outcome.resolve(result.value as R);
    } else {
      this.outcome.reject(
        new TaskFailedError(this.id, this.serviceName, this.methodName, result.attempts, result.reason, fromErrorInfo(result.error)),
      );
    }
  }

  abandon(error: Error): void {
    this.outcome.reject(error);
  }
}

/** Per-dispatch options: `client.dispatch(stub, { batchKey: 'tenant-7' }).send(...)`. */
export interface DispatchOptions {
  /** The batch key of these tasks (their `meta.batchKey`), instead of the stub's. */
  batchKey?: string;
  /** Metadata merged over the stub's. */
  meta?: Record<string, string>;
  /** Tags added to the stub's. */
  tags?: string[];
  /**
   * Send the task without asking for its result: workers publish none, and
   * the client keeps nothing for it. `handle.result()` rejects at once.
   */
  fireAndForget?: boolean;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyFunction = (...args: any[]) => any;

/** The fire-and-keep-a-handle view of a stub: each method returns a `TaskHandle`. */
export type TaskHandles<T> = {
  [K in keyof T as T[K] extends AnyFunction ? K : never]: T[K] extends (...args: infer A) => infer R
    ? (...args: A) => Promise<TaskHandle<Awaited<R>>>
    : never;
};
