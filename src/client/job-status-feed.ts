/**
 * A client's view of `sheaf-job-state` (docs/jobs.md): one non-durable
 * subscription, opened with the client's first job and before the job's
 * creation is published, so no status of its own jobs is missed. It keeps
 * the last status of each job the client follows, wakes what waits on one,
 * and sends job events (creation, seal, status and list requests).
 *
 * A client that attaches to jobs made elsewhere keeps a table instead:
 * the status of every job, loaded once from the active tracker (a list of
 * all it holds) and kept current by the same subscription, as Pulsar's
 * TableView keeps a topic's latest value per key. So `status()` of any job
 * answers from memory however loaded the tracker is; only a job the table
 * does not hold yet (created since, with no status published) is asked of
 * the tracker.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { JobWaitError } from '../errors.js';
import { JOB_ANSWERS_TOPIC, JOB_EVENTS_TOPIC, JOB_REQUESTS_TOPIC, JOB_STATE_TOPIC, JOB_TRACKER_SUBSCRIPTION } from '../topics.js';
import type { Consumer, Producer, Transport } from '../transport/transport.js';
import { isAbortError } from '../transport/transport.js';
import {
  decodeJobState,
  encodeJobEvent,
  MAX_JOBS_LISTED,
  type JobEvent,
  type JobListMessage,
  type JobStatus,
  type TrackerActivated,
} from '../wire/job-events.js';

/** Jobs whose statuses one client keeps at most (a few hundred bytes each). */
const MAX_FOLLOWED = 10_000;

/** Statuses a client's table keeps at most (a few hundred bytes each): past a tracker's 20,000 jobs by default. */
const MAX_TABLE = 50_000;

/** How long loading the table waits for the tracker's answer before statuses are asked job by job again. */
const TABLE_WAIT_MS = 10_000;

/**
 * Reads `sheaf-job-state` (and the answers to its requests on
 * `sheaf-job-answers`) for a client and hands each status to the jobs
 * that wait on it; sends job events (creation, seal, status requests).
 */
/** How a status message begins as `encodeJobEvent` writes it: the job id follows. */
const STATUS_PREFIX = Buffer.from('{"v":1,"kind":"jobStatus","status":{"jobId":"');

export class JobStatusFeed {
  private readonly latest = new Map<string, JobStatus>();
  /** The tracker epoch of each kept status (0 for a tracker that sends none). */
  private readonly epochs = new Map<string, number>();
  /** Jobs whose statuses this client keeps. */
  private readonly followed = new Set<string>();
  private readonly waiters = new Map<string, Set<(status: JobStatus) => void>>();
  /** List requests waiting for their answer (or its parts), by request id. */
  private readonly lists = new Map<string, (list: JobListMessage) => void>();
  /** Every job's status is kept, not only followed ones': set by `loadTable()`. */
  private keepsAll = false;
  /** The table's load under way, or done (true); null before the first or after one that got no answer. */
  private table: Promise<boolean> | null = null;
  private readonly stop = new AbortController();
  private loop: Promise<void> | null = null;

  private constructor(
    private readonly consumer: Consumer,
    /** Answers to this client's requests (`JOB_ANSWERS_TOPIC`): not behind the flood of every job's statuses. */
    private readonly answers: Consumer,
    private readonly events: Producer,
    /** Status requests go apart from the events (`JOB_REQUESTS_TOPIC`): answered without waiting behind them. */
    private readonly requests: Producer,
    private readonly log: Logger,
  ) {}

  /** Subscribes to statuses first, then opens the events producer (the tracker's subscription made before it). */
  static async open(transport: Transport, clientName: string, log: Logger): Promise<JobStatusFeed> {
    const consumer = await transport.subscribe({
      topic: JOB_STATE_TOPIC,
      subscription: `sheaf-job-status-${clientName}`,
      maxUnacked: 1000,
      durable: false,
    });
    let answers: Consumer | undefined;
    try {
      answers = await transport.subscribe({
        topic: JOB_ANSWERS_TOPIC,
        subscription: `sheaf-job-answers-${clientName}`,
        maxUnacked: 1000,
        durable: false,
      });
      await transport.ensureSubscription(JOB_EVENTS_TOPIC, JOB_TRACKER_SUBSCRIPTION, 'failover');
      const [events, requests] = await Promise.all([
        transport.createProducer(JOB_EVENTS_TOPIC),
        transport.createProducer(JOB_REQUESTS_TOPIC),
      ]);
      const feed = new JobStatusFeed(consumer, answers, events, requests, log);
      feed.loop = Promise.all([feed.receive(consumer), feed.receive(answers)]).then(() => undefined);
      return feed;
    } catch (error) {
      await consumer.close().catch(() => undefined);
      await answers?.close().catch(() => undefined);
      throw error;
    }
  }

  /** Publishes a job event, keyed by its job (a list request by its id), once the broker has it. */
  async publish(event: Exclude<JobEvent, TrackerActivated>): Promise<void> {
    const to = event.kind === 'jobStatusRequest' || event.kind === 'jobListRequest' ? this.requests : this.events;
    await to.send({ payload: encodeJobEvent(event), key: 'jobId' in event ? event.jobId : event.requestId });
  }

  /**
   * The statuses of the jobs the tracker holds (running, or finished within
   * the retention), the most recently started first, at most `limit`;
   * `JobWaitError` when no tracker answers within `timeoutMs`.
   */
  async list(limit: number, timeoutMs: number): Promise<JobStatus[]> {
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_JOBS_LISTED) {
      throw new RangeError(`listJobs: limit must be an integer from 1 to ${MAX_JOBS_LISTED} (got ${limit})`);
    }
    const requestId = randomUUID();
    const answer = new Promise<JobStatus[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.lists.delete(requestId);
        reject(
          new JobWaitError(
            undefined,
            timeoutMs,
            `no job tracker answered a list within ${timeoutMs} ms (is a sheaf worker running, with jobs.tracker on?)`,
          ),
        );
      }, timeoutMs);
      this.lists.set(requestId, (list) => {
        clearTimeout(timer);
        this.lists.delete(requestId);
        resolve(list.statuses);
      });
    });
    answer.catch(() => undefined); // rejected only if the send below succeeded and nothing came
    try {
      await this.publish({ v: 1, kind: 'jobListRequest', requestId, limit });
    } catch (error) {
      this.lists.get(requestId)?.({ v: 1, kind: 'jobList', requestId, statuses: [] });
      throw error;
    }
    return answer;
  }

  /**
   * From now on keeps every job's status, not only followed ones', and
   * loads the statuses of every job the active tracker holds (answered in
   * parts). Resolves true once loaded; false when no tracker answered
   * within 10 s or the request could not be sent (the next call tries
   * again; meanwhile statuses are asked job by job). Never rejects.
   */
  loadTable(): Promise<boolean> {
    this.keepsAll = true;
    this.table ??= this.requestTable().then((loaded) => {
      if (!loaded) this.table = null;
      return loaded;
    });
    return this.table;
  }

  private async requestTable(): Promise<boolean> {
    const requestId = randomUUID();
    const parts = new Set<number>();
    const closed = this.stop.signal;
    let stopWaiting = (): void => undefined;
    const loaded = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), TABLE_WAIT_MS);
      const onClose = (): void => resolve(false);
      closed.addEventListener('abort', onClose, { once: true });
      stopWaiting = () => {
        clearTimeout(timer);
        closed.removeEventListener('abort', onClose);
      };
      this.lists.set(requestId, (list) => {
        for (const status of list.statuses) this.keep(status, list.epoch ?? 0);
        // An answer in one message (a tracker that sends no parts) is whole.
        parts.add(list.part?.index ?? 0);
        if (parts.size >= (list.part?.count ?? 1)) resolve(true);
      });
    });
    try {
      if (closed.aborted) return false;
      await this.publish({ v: 1, kind: 'jobListRequest', requestId, limit: MAX_JOBS_LISTED, all: true });
      const answered = await loaded;
      if (!answered && !closed.aborted) {
        this.log.debug({ requestId }, 'no job tracker answered the table request; statuses are asked job by job');
      }
      return answered;
    } catch (error) {
      this.log.debug({ err: error }, 'the job table request could not be sent; statuses are asked job by job');
      return false;
    } finally {
      stopWaiting();
      this.lists.delete(requestId);
    }
  }

  /** The last status seen of a job, if any. */
  last(jobId: string): JobStatus | undefined {
    return this.latest.get(jobId);
  }

  /**
   * Resolves with the first status of `jobId` that `accept` takes (the last
   * seen counts), or rejects with `JobWaitError` after `timeoutMs` or an
   * AbortError when `signal` aborts.
   */
  waitFor(
    jobId: string,
    accept: (status: JobStatus) => boolean,
    timeoutMs: number,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<JobStatus> {
    const seen = this.latest.get(jobId);
    if (seen && accept(seen)) return Promise.resolve(seen);
    signal?.throwIfAborted();
    return new Promise((resolve, reject) => {
      const listeners = this.waiters.get(jobId) ?? new Set();
      this.waiters.set(jobId, listeners);
      const done = (): void => {
        listeners.delete(listener);
        if (listeners.size === 0) this.waiters.delete(jobId);
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const listener = (status: JobStatus): void => {
        if (!accept(status)) return;
        done();
        resolve(status);
      };
      const onAbort = (): void => {
        done();
        reject(signal!.reason);
      };
      const timer =
        timeoutMs === Infinity
          ? undefined
          : setTimeout(() => {
              done();
              reject(new JobWaitError(jobId, timeoutMs, `job ${jobId}: ${what} within ${timeoutMs} ms`));
            }, timeoutMs);
      listeners.add(listener);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.loop;
    await Promise.allSettled([this.consumer.close(), this.answers.close(), this.events.close(), this.requests.close()]);
  }

  /**
   * True for a status, as the tracker writes it, of a job nobody here
   * follows: skipped unread (the topic carries every job's statuses, and
   * reading each through the schema cost a client following one job as
   * much as the tracker writing them all). Never once the table is on: it
   * keeps every job's. Anything else is read in full.
   */
  private unfollowedStatus(payload: Uint8Array): boolean {
    if (this.keepsAll || payload.length < STATUS_PREFIX.length) return false;
    const bytes = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    if (!bytes.subarray(0, STATUS_PREFIX.length).equals(STATUS_PREFIX)) return false;
    const end = bytes.indexOf(0x22, STATUS_PREFIX.length); // the closing quote of the job id
    if (end < 0) return false;
    const jobId = bytes.toString('utf8', STATUS_PREFIX.length, end);
    return !jobId.includes('\\') && !this.followed.has(jobId);
  }

  private async receive(consumer: Consumer): Promise<void> {
    const signal = this.stop.signal;
    while (!signal.aborted) {
      let messages;
      try {
        messages = await consumer.receiveMany(1000, signal);
      } catch (error) {
        if (signal.aborted || isAbortError(error)) return;
        this.log.warn({ err: error }, 'receiving job statuses failed; job waits rely on their timeouts');
        return;
      }
      for (const message of messages) {
        if (this.unfollowedStatus(message.payload)) continue;
        const decoded = decodeJobState(message.payload);
        if ('problem' in decoded) {
          this.log.debug({ problem: decoded.problem }, 'a job status message was not understood; skipped');
          continue;
        }
        if ('list' in decoded) {
          this.lists.get(decoded.list.requestId)?.(decoded.list);
          continue;
        }
        this.keep(decoded.status, decoded.epoch ?? 0);
      }
      await consumer.ackAll(messages).catch(() => undefined);
    }
  }

  /**
   * Keeps a status heard (unless it says less than the one kept) and wakes
   * what waits on its job. Only jobs someone here follows are kept, or every
   * job once the table is on: the topic carries every job of the namespace.
   */
  private keep(status: JobStatus, epoch: number): void {
    const kept = this.latest.get(status.jobId);
    if (!kept && !this.keepsAll && !this.followed.has(status.jobId)) return;
    if (kept && isOlder(status, epoch, kept, this.epochs.get(status.jobId) ?? 0)) return;
    if (!kept && this.latest.size >= MAX_TABLE) this.dropFromTable();
    this.latest.set(status.jobId, status);
    this.epochs.set(status.jobId, epoch);
    for (const listener of [...(this.waiters.get(status.jobId) ?? [])]) listener(status);
  }

  /** Makes room in a full table: the status kept longest of a job nobody here follows or waits on. */
  private dropFromTable(): void {
    for (const jobId of this.latest.keys()) {
      if (this.followed.has(jobId) || this.waiters.has(jobId)) continue;
      this.latest.delete(jobId);
      this.epochs.delete(jobId);
      return;
    }
  }

  /**
   * Starts keeping `jobId`'s statuses. A client that starts job after job
   * keeps the last `MAX_FOLLOWED` only (jobs something waits on stay): an
   * older job's `status()` asks the tracker again.
   */
  follow(jobId: string): void {
    this.followed.delete(jobId);
    this.followed.add(jobId);
    if (this.followed.size <= MAX_FOLLOWED) return;
    // The oldest that nothing waits on: a waiting done() keeps its job followed.
    for (const old of this.followed) {
      if (this.waiters.has(old)) continue;
      this.followed.delete(old);
      this.latest.delete(old);
      this.epochs.delete(old);
      return;
    }
  }
}

/**
 * Whether a status says less than the one kept: from a tracker of a lower
 * epoch (one that lost its term and woke up to answer), or, from the same
 * tracker, behind it (statuses and answers travel on two topics, so they can
 * cross). A job's progress only grows: tasks settle, it is sealed, it
 * finishes.
 */
function isOlder(status: JobStatus, epoch: number, kept: JobStatus, keptEpoch: number): boolean {
  if (epoch !== keptEpoch) return epoch < keptEpoch;
  const settled = (s: JobStatus): number => s.succeeded + s.failed + s.deadLettered;
  return (
    settled(status) < settled(kept) ||
    (kept.sealed && !status.sealed) ||
    (kept.finishedAt !== null && status.finishedAt === null) ||
    (kept.stopped && !status.stopped)
  );
}
