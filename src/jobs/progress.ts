/**
 * One job's progress as the job tracker folds it from the job's events: a
 * bit per task index (set once the task reached a final outcome) and a count
 * per outcome. Distinct task indexes are counted, so a redelivered event, a
 * task's twin or a later attempt of a task already settled changes nothing:
 * the first final outcome of an index is the one counted.
 *
 * Memory is a bit per task up to the highest index seen (grown by doubling),
 * not a map of ids: 125 KiB for a job of a million tasks, bounded by
 * `MAX_JOB_TASKS`. A snapshot holds the same bits (base64), so a tracker that
 * takes over resumes from it and folds the events not yet acked again,
 * harmlessly.
 */
import { MAX_JOB_TASKS, type JobCallbacks, type JobEvent, type JobTaskOutcome } from '../wire/job-events.js';

/** What `job.status()` answers; every figure counts distinct tasks. */
export interface JobStatus {
  readonly jobId: string;
  readonly name: string | undefined;
  /** The number of tasks of the job, once it is sealed; null before. */
  readonly total: number | null;
  readonly sealed: boolean;
  readonly succeeded: number;
  readonly failed: number;
  readonly deadLettered: number;
  /** Tasks of a sealed job without a final outcome yet; null before the seal. */
  readonly pending: number | null;
  /** Settled tasks in per cent of the total (0-100, one decimal); null before the seal. */
  readonly percent: number | null;
  /** Epoch ms of the job's creation (of its first event, if its creation was not seen). */
  readonly startedAt: number;
  /** Epoch ms at which the tracker marked the job finished; null while it runs. */
  readonly finishedAt: number | null;
}

/** What a tracker writes down for a job, and a new tracker starts from. */
export interface JobSnapshot {
  readonly v: 1;
  readonly kind: 'jobState';
  readonly jobId: string;
  readonly name?: string;
  readonly meta: Record<string, string>;
  readonly callbacks?: JobCallbacks;
  readonly continueOnError: boolean;
  readonly total: number | null;
  readonly succeeded: number;
  readonly failed: number;
  readonly deadLettered: number;
  /** The settled bits, base64, up to the last byte with a bit set. */
  readonly settledBits: string;
  readonly startedAt: number;
  readonly finishedAt: number | null;
}

/** A job's progress, folded from its events. */
export class JobProgress {
  private bits = new Uint8Array(0);
  private counts = { succeeded: 0, failed: 0, deadLettered: 0 };
  private total: number | null = null;
  private finishedAt: number | null = null;
  private name: string | undefined;
  private meta: Record<string, string> = {};
  private callbacks: JobCallbacks | undefined;
  private continueOnError = true;

  constructor(
    readonly jobId: string,
    private startedAt: number,
  ) {}

  /** Folds one event of this job in; true when it changed anything. */
  apply(event: JobEvent): boolean {
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
      case 'taskSettled':
        return this.settle(event.index, event.outcome);
    }
  }

  /** Counts `index` as settled with `outcome`, unless it already was. */
  settle(index: number, outcome: JobTaskOutcome): boolean {
    if (!Number.isInteger(index) || index < 0 || index >= MAX_JOB_TASKS) return false;
    const byte = index >>> 3;
    const bit = 1 << (index & 7);
    if (byte >= this.bits.length) this.grow(byte);
    if ((this.bits[byte]! & bit) !== 0) return false;
    this.bits[byte] = this.bits[byte]! | bit;
    this.counts[outcome] += 1;
    return true;
  }

  /** True once the job is sealed and every one of its tasks settled. */
  get complete(): boolean {
    return this.total !== null && this.settled >= this.total;
  }

  /** True once the tracker marked the job finished. */
  get finished(): boolean {
    return this.finishedAt !== null;
  }

  /** Tasks with a final outcome. */
  get settled(): number {
    return this.counts.succeeded + this.counts.failed + this.counts.deadLettered;
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
    return {
      jobId: this.jobId,
      name: this.name,
      total,
      sealed: total !== null,
      ...this.counts,
      pending: total === null ? null : Math.max(0, total - this.settled),
      percent: total === null ? null : total === 0 ? 100 : Math.round((this.settled / total) * 1000) / 10,
      startedAt: this.startedAt,
      finishedAt: this.finishedAt,
    };
  }

  /** Everything a tracker needs to continue from here. */
  snapshot(): JobSnapshot {
    let used = this.bits.length;
    while (used > 0 && this.bits[used - 1] === 0) used--;
    return {
      v: 1,
      kind: 'jobState',
      jobId: this.jobId,
      ...(this.name !== undefined ? { name: this.name } : {}),
      meta: this.meta,
      ...(this.callbacks !== undefined ? { callbacks: this.callbacks } : {}),
      continueOnError: this.continueOnError,
      total: this.total,
      ...this.counts,
      settledBits: Buffer.from(this.bits.buffer, this.bits.byteOffset, used).toString('base64'),
      startedAt: this.startedAt,
      finishedAt: this.finishedAt,
    };
  }

  /**
   * A job's progress from its snapshot. A snapshot whose counts disagree
   * with its bits (damaged, or written by something else) is refused with a
   * RangeError naming the job: the bits are what makes later events
   * idempotent, and counts that do not match them would never add up.
   */
  static fromSnapshot(snapshot: JobSnapshot): JobProgress {
    const progress = new JobProgress(snapshot.jobId, snapshot.startedAt);
    const bits = Buffer.from(snapshot.settledBits, 'base64');
    if (bits.length > Math.ceil(MAX_JOB_TASKS / 8))
      throw new RangeError(`job ${snapshot.jobId}: snapshot has more than ${MAX_JOB_TASKS} tasks`);
    progress.bits = new Uint8Array(bits);
    progress.counts = { succeeded: snapshot.succeeded, failed: snapshot.failed, deadLettered: snapshot.deadLettered };
    let population = 0;
    for (const byte of progress.bits) population += POPCOUNT[byte]!;
    if (population !== progress.settled) {
      throw new RangeError(`job ${snapshot.jobId}: snapshot counts ${progress.settled} settled tasks but its bits ${population}`);
    }
    progress.total = snapshot.total;
    progress.finishedAt = snapshot.finishedAt;
    progress.name = snapshot.name;
    progress.meta = snapshot.meta;
    progress.callbacks = snapshot.callbacks;
    progress.continueOnError = snapshot.continueOnError;
    return progress;
  }

  private grow(byte: number): void {
    let size = Math.max(16, this.bits.length);
    while (size <= byte) size *= 2;
    const grown = new Uint8Array(Math.min(size, Math.ceil(MAX_JOB_TASKS / 8)));
    grown.set(this.bits);
    this.bits = grown;
  }
}

/** Bits set in each byte value. */
const POPCOUNT = Uint8Array.from({ length: 256 }, (_, value) => {
  let n = 0;
  for (let v = value; v !== 0; v >>= 1) n += v & 1;
  return n;
});
