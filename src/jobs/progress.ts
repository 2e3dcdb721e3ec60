/**
 * One job's progress as the job tracker folds it from the job's events: two
 * bits per task index (none yet, succeeded, failed, dead-lettered) and a
 * count per outcome. Distinct task indexes are counted, so a redelivered
 * event, a task's twin or a later attempt of a task already settled changes
 * nothing: the first final outcome of an index is the one counted.
 *
 * Memory is two bits per task up to the highest index seen (grown by
 * doubling), not a map of ids: 250 KiB for a job of a million tasks, bounded
 * by `MAX_JOB_TASKS`. A snapshot holds the same bits, so it can be merged
 * into a progress that folded other events meanwhile (`merge`): a tracker
 * that takes over folds snapshots and events in whatever order they come
 * and ends with the same counts.
 */
import {
  MAX_JOB_TASKS,
  type JobCallbacks,
  type JobFact,
  type JobSnapshot,
  type JobStatus,
  type JobTaskOutcome,
} from '../wire/job-events.js';

export type { JobSnapshot, JobStatus };

/** Outcome codes in the two bits of a task index. */
const CODE: Record<JobTaskOutcome, number> = { succeeded: 1, failed: 2, deadLettered: 3 };
const OUTCOME_OF: readonly (JobTaskOutcome | null)[] = [null, 'succeeded', 'failed', 'deadLettered'];
/** Bytes of outcomes a job may use at most (four tasks per byte). */
const MAX_OUTCOME_BYTES = Math.ceil(MAX_JOB_TASKS / 4);

/** A job's progress, folded from its events. */
export class JobProgress {
  /** Four task indexes per byte, two bits each (see `CODE`). */
  private outcomes = new Uint8Array(0);
  private counts = { succeeded: 0, failed: 0, deadLettered: 0 };
  private total: number | null = null;
  private finishedAt: number | null = null;
  private name: string | undefined;
  private meta: Record<string, string> = {};
  private callbacks: JobCallbacks | undefined;
  private continueOnError = true;
  private callbacksSent = false;

  constructor(
    readonly jobId: string,
    private startedAt: number,
  ) {}

  /** Folds one fact of this job in; true when it changed anything. */
  apply(event: JobFact): boolean {
    switch (event.kind) {
      case 'jobCreated':
        this.name = event.name;
        this.meta = event.meta;
        this.callbacks = event.callbacks;
        this.continueOnError = event.continueOnError;
        this.startedAt = Math.min(this.startedAt, event.at);
        return true;
      case 'jobSealed':
        if (this.total !== null) return false;
        this.total = event.total;
        return true;
      case 'tasksSettled': {
        let changed = false;
        for (const [index, outcome] of event.tasks) if (this.settle(index, outcome)) changed = true;
        return changed;
      }
    }
  }

  /** Counts `index` as settled with `outcome`, unless it already was. */
  settle(index: number, outcome: JobTaskOutcome): boolean {
    if (!Number.isInteger(index) || index < 0 || index >= MAX_JOB_TASKS) return false;
    const byte = index >>> 2;
    const shift = (index & 3) * 2;
    if (byte >= this.outcomes.length) this.grow(byte);
    if (((this.outcomes[byte]! >>> shift) & 3) !== 0) return false;
    this.outcomes[byte] = this.outcomes[byte]! | (CODE[outcome] << shift);
    this.counts[outcome] += 1;
    return true;
  }

  /**
   * Folds a snapshot of the same job in: what it knows and this does not is
   * added (an index settled here first keeps its outcome); its seal, its
   * finished mark and its creation fields are taken where this has none.
   * True when anything changed.
   */
  merge(snapshot: JobSnapshot): boolean {
    let changed = false;
    const theirs = decodeOutcomes(snapshot);
    for (let byte = 0; byte < theirs.length; byte++) {
      const packed = theirs[byte]!;
      if (packed === 0) continue;
      for (let slot = 0; slot < 4; slot++) {
        const outcome = OUTCOME_OF[(packed >>> (slot * 2)) & 3];
        if (outcome && this.settle(byte * 4 + slot, outcome)) changed = true;
      }
    }
    if (this.total === null && snapshot.total !== null) {
      this.total = snapshot.total;
      changed = true;
    }
    if (this.finishedAt === null && snapshot.finishedAt !== null) {
      this.finishedAt = snapshot.finishedAt;
      changed = true;
    }
    if (snapshot.startedAt < this.startedAt) this.startedAt = snapshot.startedAt;
    this.name ??= snapshot.name;
    if (Object.keys(this.meta).length === 0) this.meta = snapshot.meta;
    this.callbacks ??= snapshot.callbacks;
    if (!snapshot.continueOnError) this.continueOnError = false;
    if (snapshot.callbacksSent && !this.callbacksSent) {
      this.callbacksSent = true;
      changed = true;
    }
    return changed;
  }

  /**
   * True once the job is sealed and every one of its tasks settled, or once
   * it stopped at its first final failure (`continueOnError: false`).
   */
  get complete(): boolean {
    return (this.total !== null && this.settled >= this.total) || this.stopped;
  }

  /** A job with `continueOnError: false` stops at its first task that failed or was dead-lettered. */
  get stopped(): boolean {
    return !this.continueOnError && this.counts.failed + this.counts.deadLettered > 0;
  }

  /** True once the tracker marked the job finished. */
  get finished(): boolean {
    return this.finishedAt !== null;
  }

  /** Tasks with a final outcome. */
  get settled(): number {
    return this.counts.succeeded + this.counts.failed + this.counts.deadLettered;
  }

  /** True once the job's callbacks were dispatched (or it had none to dispatch) after it finished. */
  get callbacksDispatched(): boolean {
    return this.callbacksSent;
  }

  /** Records that the job's callbacks were dispatched. */
  markCallbacksSent(): void {
    this.callbacksSent = true;
  }

  /** The callbacks the job was created with, if any. */
  get callbackTarget(): JobCallbacks | undefined {
    return this.callbacks;
  }

  /** Marks the job finished at `at`; false (and nothing changes) if it was already, or is not complete. */
  markFinished(at: number): boolean {
    if (this.finishedAt !== null || !this.complete) return false;
    this.finishedAt = at;
    return true;
  }

  /** The figures `job.status()` answers. */
  status(): JobStatus {
    const total = this.total;
    const stopped = this.stopped;
    const unsettled = total === null ? null : Math.max(0, total - this.settled);
    return {
      jobId: this.jobId,
      name: this.name,
      total,
      sealed: total !== null,
      ...this.counts,
      // A stopped job waits for nothing: what did not settle is cancelled.
      pending: stopped ? 0 : unsettled,
      percent: total === null ? null : total === 0 ? 100 : Math.round((this.settled / total) * 1000) / 10,
      startedAt: this.startedAt,
      finishedAt: this.finishedAt,
      stopped,
      cancelled: stopped ? unsettled : 0,
    };
  }

  /** Everything a tracker needs to continue from here. */
  snapshot(): JobSnapshot {
    let used = this.outcomes.length;
    while (used > 0 && this.outcomes[used - 1] === 0) used--;
    return {
      v: 1,
      kind: 'jobState',
      jobId: this.jobId,
      ...(this.name !== undefined ? { name: this.name } : {}),
      meta: this.meta,
      ...(this.callbacks !== undefined ? { callbacks: this.callbacks } : {}),
      continueOnError: this.continueOnError,
      total: this.total,
      outcomes: Buffer.from(this.outcomes.buffer, this.outcomes.byteOffset, used).toString('base64'),
      startedAt: this.startedAt,
      finishedAt: this.finishedAt,
      callbacksSent: this.callbacksSent,
    };
  }

  /** A job's progress from its snapshot. */
  static fromSnapshot(snapshot: JobSnapshot): JobProgress {
    const progress = new JobProgress(snapshot.jobId, snapshot.startedAt);
    progress.merge(snapshot);
    return progress;
  }

  private grow(byte: number): void {
    let size = Math.max(16, this.outcomes.length);
    while (size <= byte) size *= 2;
    const grown = new Uint8Array(Math.min(size, MAX_OUTCOME_BYTES));
    grown.set(this.outcomes);
    this.outcomes = grown;
  }
}

/** A snapshot's outcome bytes; a RangeError naming the job when they hold more than `MAX_JOB_TASKS`. */
function decodeOutcomes(snapshot: JobSnapshot): Uint8Array {
  const bytes = Buffer.from(snapshot.outcomes, 'base64');
  if (bytes.length > MAX_OUTCOME_BYTES) throw new RangeError(`job ${snapshot.jobId}: snapshot holds more than ${MAX_JOB_TASKS} tasks`);
  return bytes;
}
