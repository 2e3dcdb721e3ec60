import { TaskFailedError } from '../errors.js';
import { deferred, type Deferred } from '../util/deferred.js';
import { fromErrorInfo } from '../wire/error-info.js';
import type { ResultEnvelope } from '../wire/envelopes.js';

/** A dispatched task: its id now, its result when it settles. */
export interface TaskHandle<R> {
  readonly id: string;
  readonly serviceName: string;
  readonly methodName: string;
  /** Resolves with the task's result; rejects with `TaskFailedError` once it finally failed. */
  result(): Promise<R>;
}

/** @internal The client's record of a task it waits for. */
export class PendingTask<R = unknown> implements TaskHandle<R> {
  private readonly outcome: Deferred<R> = deferred<R>();

  constructor(
    readonly id: string,
    readonly serviceName: string,
    readonly methodName: string,
  ) {
    // The result may never be asked for (fire and forget): a failure must not
    // then surface as an unhandled rejection.
    this.outcome.promise.catch(() => undefined);
  }

  result(): Promise<R> {
    return this.outcome.promise;
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
