/**
 * Jobs as a client sees them (docs/jobs.md): `client.job()` creates one,
 * `job.dispatch(stub)` joins tasks to it (each gets the next index),
 * `job.seal()` says no more come, and `status()`/`done()` read what the job
 * tracker publishes on `sheaf-job-state`. `client.attachJob(id)` follows a
 * job from another process (it cannot dispatch: the indexes are its
 * creator's).
 *
 * Statuses reach a client through one non-durable subscription
 * (`JobStatusFeed`, src/client/job-status-feed.ts). A job attached
 * later, or a status nobody has published yet, is asked of the tracker
 * (`jobStatusRequest`); an answer that does not come in time is a
 * `JobWaitError` that says what to check.
 */
import { randomUUID } from 'node:crypto';
import { JobStoppedError, LifecycleError } from '../errors.js';
import type { JobCallbacks, JobStatus, TaskJobRef } from '../wire/job-events.js';
import type { JobResults, JobTaskResult } from './job-results.js';
import type { JobStatusFeed } from './job-status-feed.js';
import type { ResumableDispatch } from './resumable-dispatch.js';
import { PendingTask, type DispatchOptions, type TaskHandles } from './task-handle.js';

/** What `client.job()` takes. */
export interface JobOptions {
  /** Shown in statuses and `sheaf job list`. */
  name?: string;
  /** Free-form strings kept with the job. */
  meta?: Record<string, string>;
  /** A service whose methods are called once the job finished: `onSuccess` when nothing failed, `onComplete` always. */
  callbacks?: JobCallbacks;
  /** True (default): a failed task is counted and the job goes on. */
  continueOnError?: boolean;
  /**
   * Dispatch so that `client.resumeJob(jobId)` can continue it after this
   * process dies (docs/jobs.md, "Resume"): tasks go through producers named
   * after the job, with broker deduplication. Default false: a producer per
   * job and topic is worth it for large jobs, not for many small ones.
   */
  resumable?: boolean;
  /**
   * Keep each task's outcome for `job.results()` until it is read (tasks
   * dispatched with a result, from this process). Default false.
   */
  keepResults?: boolean;
}

/** How long `status()` waits for the tracker when no status of the job has been seen yet. */
const STATUS_WAIT_MS = 10_000;

/** What the client needs of a job to send its tasks (`Job.dispatching`). */
export interface JobBinding {
  dispatching<R>(send: (ref: TaskJobRef) => Promise<R>): Promise<R>;
  /** A resumable job's own send (named producers, the index as sequence id); absent: the client's producers. */
  readonly resumable: ResumableDispatch | null;
}

/**
 * A job: tasks that belong together, counted by the job tracker, finished
 * once. Made by `client.job()` (can dispatch) or `client.attachJob()`
 * (follows only).
 */
export class Job implements JobBinding {
  private nextIndex: number;
  private sealedAt: number | null = null;
  /** Dispatches under way: `seal()` waits for them, so its total counts only tasks that exist. A count, not a set: it is paid per task. */
  private sendsUnderWay = 0;
  /** Resolved when `sendsUnderWay` drops to 0 while `seal()` waits. */
  private sendsDone: (() => void) | null = null;
  /** Tasks that could neither be dispatched nor counted: the job cannot finish; `seal()` says so. */
  private readonly uncounted: Error[] = [];

  /** @internal Made by `SheafClient.job()` and `attachJob()`. */
  constructor(
    readonly jobId: string,
    private readonly feed: JobStatusFeed,
    /** Dispatches through the client with a job reference; null for an attached job. */
    private readonly dispatcher: (<T extends object>(stub: T, options: DispatchOptions, job: JobBinding) => TaskHandles<T>) | null,
    /** @internal A resumable job's sends and checkpoint; null otherwise. */
    readonly resumable: ResumableDispatch | null = null,
    /** Where each task's item-error callback goes (`callbacks.onItemError`), if anywhere. */
    private readonly onItemError: { service: string; method: string } | null = null,
    /** Outcomes kept for `results()` (`keepResults`); null otherwise. */
    private readonly kept: JobResults | null = null,
  ) {
    // A resumed job continues after the tasks its checkpoint says are stored.
    this.nextIndex = resumable?.resumedAt ?? 0;
  }

  /** A new job id. */
  static newId(): string {
    return `job-${randomUUID()}`;
  }

  /**
   * The handle-returning view of a stub, as `client.dispatch(stub, options)`,
   * for tasks of this job: each gets the next index. Throws once the job is
   * sealed, and on an attached job.
   */
  dispatch<T extends object>(stub: T, options: DispatchOptions = {}): TaskHandles<T> {
    if (!this.dispatcher) {
      throw new LifecycleError(`job ${this.jobId} was attached, not created here: only the process that created it dispatches its tasks`);
    }
    return this.dispatcher(stub, options, this);
  }

  /**
   * @internal How the client sends a task of this job: gives it the next
   * index (or refuses once sealed) and tracks the send until it settles, so
   * that `seal()` counts only tasks that exist.
   */
  dispatching<R>(send: (ref: TaskJobRef) => Promise<R>): Promise<R> {
    if (this.sealedAt !== null) return Promise.reject(new LifecycleError(`job ${this.jobId} is sealed: no more tasks can join it`));
    if (this.feed.last(this.jobId)?.stopped) return Promise.reject(new JobStoppedError(this.jobId));
    const index = this.nextIndex++;
    const sending = send({ id: this.jobId, index, ...(this.onItemError ? { onItemError: this.onItemError } : {}) });
    this.sendsUnderWay += 1;
    sending.then(
      (handle) => {
        this.resumable?.confirm(index);
        if (this.kept && handle instanceof PendingTask) this.kept.follow(index, handle);
        this.sendSettled();
      },
      (error: unknown) =>
        void this.countUndispatched(index, error).then(
          () => {
            this.resumable?.confirm(index); // counted: a resume must not send it again
            this.sendSettled();
          },
          (uncounted: Error) => {
            this.uncounted.push(uncounted);
            this.sendSettled();
          },
        ),
    );
    return sending;
  }

  private sendSettled(): void {
    this.sendsUnderWay -= 1;
    if (this.sendsUnderWay === 0) this.sendsDone?.();
    this.kept?.nudge();
  }

  /**
   * A task given an index whose dispatch failed (the caller has the error):
   * counted as dead-lettered, or the job could never finish. Had the broker
   * stored it after all (a send timeout), the worker's later report of that
   * index counts nothing.
   */
  private async countUndispatched(index: number, error: unknown): Promise<void> {
    await this.feed
      .publish({ v: 1, kind: 'tasksSettled', jobId: this.jobId, tasks: [[index, 'deadLettered']], at: Date.now() })
      .catch((publishError: unknown) => {
        // Neither the task nor its count reached the broker: the job waits for an index that never settles.
        throw new LifecycleError(
          `job ${this.jobId}: task ${index} could not be dispatched (${(error as Error).message}) nor counted; the job cannot finish`,
          { cause: publishError },
        );
      });
  }

  /** Tasks given an index so far (on a resumed job: with those dispatched before the resume). */
  get dispatched(): number {
    return this.nextIndex;
  }

  /** Where a resumed job continued: the tasks its checkpoint held as dispatched (0 for a job created here). */
  get resumedAt(): number {
    return this.resumable?.resumedAt ?? 0;
  }

  /** Tasks sent again after a resume that the broker had already stored, and dropped (deduplication). */
  get deduplicated(): number {
    return this.resumable?.deduplicated ?? 0;
  }

  /**
   * Dispatches one task per item of `items` (an array, any iterable, or an
   * async iterable read as it goes), through `dispatch`, which joins it to
   * this job: `(row) => job.dispatch(rows, { fireAndForget: true }).insert(row)`.
   * At most `inFlight` (default 1000) dispatches are under way at once, and
   * items are read only as room frees up, so memory stays bounded however
   * large the input. For large inputs dispatch fire-and-forget: the job
   * counts the outcomes, and no result is kept per task. Resolves with the
   * number of tasks dispatched; the first failure stops reading, waits for
   * what is under way, and rejects with it. Does not seal the job.
   *
   * On a resumable job each item's index is its position in `items`, and
   * `dispatch` must dispatch exactly one task of this job, synchronously
   * (before its first `await`), so that the index is the item's. A resumed
   * job (`client.resumeJob`) skips the items its checkpoint holds as
   * dispatched: pass the same items in the same order.
   */
  async addAll<I>(
    items: Iterable<I> | AsyncIterable<I>,
    dispatch: (item: I, index: number) => Promise<unknown>,
    options: { inFlight?: number; onProgress?: (dispatched: number) => void } = {},
  ): Promise<number> {
    const limit = options.inFlight ?? 1000;
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`job.addAll: inFlight must be a positive integer (got ${limit})`);
    const running = new Set<Promise<void>>();
    let dispatched = 0;
    let failure: { error: unknown } | null = null;
    let index = 0;
    const skip = this.resumedAt;
    for await (const item of items as AsyncIterable<I>) {
      if (failure) break;
      if (index < skip) {
        index++;
        continue;
      }
      const given = this.nextIndex;
      const call = dispatch(item, index++);
      if (this.resumable && this.nextIndex !== given + 1) {
        // The item's index and its task's would differ, and a resume would skip or repeat items.
        failure ??= {
          error: new LifecycleError(
            `job ${this.jobId} is resumable: addAll's dispatch must dispatch exactly one task of the job per item, ` +
              `before its first await (item ${index - 1} dispatched ${this.nextIndex - given})`,
          ),
        };
      }
      const sending: Promise<void> = call.then(
        () => {
          dispatched += 1;
          options.onProgress?.(dispatched);
        },
        (error: unknown) => {
          failure ??= { error };
        },
      );
      running.add(sending);
      void sending.finally(() => running.delete(sending));
      if (running.size >= limit) await Promise.race(running);
    }
    await Promise.all(running);
    if (failure) throw (failure as { error: unknown }).error;
    return dispatched;
  }

  /**
   * The outcome of each task of the job as it arrives (`{ taskId, index,
   * outcome, value | error }`), each once, ending once the job is sealed and
   * every task dispatched with a result has its outcome. Needs a job created
   * here with `keepResults: true`; tasks dispatched fire-and-forget have no
   * result and are not listed (the job still counts them). One reader at a time.
   */
  results(): AsyncIterable<JobTaskResult> {
    if (!this.kept) {
      throw new LifecycleError(
        `job ${this.jobId}: results are kept only for a job created in this process with keepResults: true (status() has the counts)`,
      );
    }
    return this.kept.read(() => this.sealedAt !== null && this.sendsUnderWay === 0);
  }

  /**
   * Says no more tasks come: once the tasks dispatched so far all reached a
   * final outcome, the tracker marks the job finished. Waits for dispatches
   * under way first. Idempotent. Rejects with a `LifecycleError` when a
   * task could neither be dispatched nor counted (the broker was away for
   * both): the job is sealed, but cannot finish.
   */
  async seal(): Promise<void> {
    if (!this.dispatcher) throw new LifecycleError(`job ${this.jobId} was attached, not created here: seal it where it was created`);
    if (this.sealedAt !== null) return;
    this.sealedAt = Date.now();
    if (this.sendsUnderWay > 0) await new Promise<void>((resolve) => (this.sendsDone = resolve));
    this.sendsDone = null;
    this.kept?.nudge();
    await this.resumable?.close();
    await this.feed.publish({ v: 1, kind: 'jobSealed', jobId: this.jobId, total: this.nextIndex, at: this.sealedAt });
    if (this.uncounted.length > 0) {
      throw new LifecycleError(
        `job ${this.jobId} is sealed, but cannot finish: ${this.uncounted.length} task(s) neither dispatched nor counted`,
        {
          cause: this.uncounted[0],
        },
      );
    }
  }

  /**
   * The job's counts as the tracker last published them (O(1): no task is
   * scanned). When none has been seen yet, the tracker is asked and
   * answered within 10 s, or `JobWaitError`.
   */
  async status(): Promise<JobStatus> {
    this.feed.follow(this.jobId); // again, if a client with many jobs let it go
    const seen = this.feed.last(this.jobId);
    if (seen) return seen;
    await this.feed.publish({ v: 1, kind: 'jobStatusRequest', jobId: this.jobId });
    return this.feed.waitFor(
      this.jobId,
      () => true,
      STATUS_WAIT_MS,
      undefined,
      'no job tracker answered (is a sheaf worker running, with jobs.tracker on?)',
    );
  }

  /**
   * Resolves with the job's final status once the tracker marked it
   * finished; rejects with `JobWaitError` after `timeoutMs` (default: no
   * bound) or an AbortError when `signal` aborts. The job is not cancelled.
   */
  async done(options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<JobStatus> {
    this.feed.follow(this.jobId);
    if (!this.feed.last(this.jobId)) await this.feed.publish({ v: 1, kind: 'jobStatusRequest', jobId: this.jobId });
    return this.feed.waitFor(
      this.jobId,
      (status) => status.finishedAt !== null,
      options.timeoutMs ?? Infinity,
      options.signal,
      'not finished',
    );
  }
}
