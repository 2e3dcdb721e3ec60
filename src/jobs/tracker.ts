/**
 * The job tracker: folds a namespace's job events into each job's progress,
 * marks a job finished once, publishes statuses for clients, and dispatches
 * a finished job's callbacks. Runs inside `sheaf worker`; of all the
 * workers' trackers, one at a time is active: the one holding the exclusive
 * producer on `sheaf-job-snapshots` (a term, `tracker-term.ts`). The others
 * stand by and try for it every second; when the active one goes, the
 * broker lets the next one have it.
 *
 * Durability without a store of its own: the active tracker writes each
 * job's snapshot (`jobState`) to `sheaf-job-snapshots`, reads it back
 * through its own subscription there, and acks the events a snapshot holds
 * (and the snapshot before it) only once the broker has it. So what is
 * unacked for a job is its latest snapshot and the events since; a tracker
 * that takes over is delivered exactly that, and merges it
 * (`JobProgress.merge` counts each task index once, in whatever order
 * snapshots and events come).
 *
 * Once: the finished mark is a snapshot with `finishedAt`, written by the
 * active tracker after the job is sealed and every task settled. A tracker
 * that takes over first reads every snapshot written before its term (up to
 * the `trackerActivated` marker it wrote as it took over: `recovering`), so
 * it merges the mark and does not set it again. A tracker that lost its
 * term without knowing it (a process frozen past the broker's keepalive,
 * woken after another took over) is fenced: the broker stores nothing more
 * from its producer, so it cannot write a second mark, and it steps down
 * as soon as it hears. Statuses carry the term's epoch, and clients keep no
 * status from a lower epoch once they have one from a higher. Callbacks
 * (`onSuccess`, `onComplete`) are tasks with stable ids
 * (`<jobId>:onSuccess`), dispatched after the mark is durable and recorded
 * in the next snapshot: a tracker killed in between dispatches them again,
 * with the same ids (at least once; docs/jobs.md).
 *
 * Lifecycle: created → standby → recovering → active → (term lost:
 * standby) → closing → closed. `close()` writes one last round of
 * snapshots when active (bounded) and ends its term: whatever it held
 * unacked goes to the next tracker.
 */
import type { Logger } from 'pino';
import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { JOB_ANSWERS_TOPIC, JOB_REQUESTS_TOPIC, JOB_STATE_TOPIC } from '../topics.js';
import type { Consumer, Producer, ReceivedMessage, Transport } from '../transport/transport.js';
import { ProducerFencedError } from '../errors.js';
import { systemClock, type Clock } from '../util/clock.js';
import { within } from '../util/within.js';
import { decodeJobEvent, encodeJobEvent, encodeJobList, type JobListRequest, type JobStatus } from '../wire/job-events.js';
import { JobProgress } from './progress.js';
import { JobCallbackDispatcher } from './job-callbacks.js';
import { TrackerMetrics } from './tracker-metrics.js';
import { acquireTerm, closeTerm, readUntil, type TrackerTerm } from './tracker-term.js';

/** How a tracker runs; every field has a default. */
export interface JobTrackerOptions {
  readonly transport: Transport;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** How often changed jobs are snapshotted (and their events acked), in ms. Default 1000. */
  readonly checkpointIntervalMs?: number;
  /** How long a finished job is kept (its last snapshot unacked, its status answerable), in ms. Default 24 h. */
  readonly retentionMs?: number;
  /**
   * Events held unacked at most (the consumer's permits); also the most
   * jobs a tracker can hold, since each job's latest snapshot stays unacked.
   * Default 20,000.
   */
  readonly maxUnacked?: number;
  /** How often a standby tries to become the active tracker, in ms. Default 1000. */
  readonly standbyRetryMs?: number;
}

/** Jobs a checkpoint round handles before it lets other work run (a status request waits for no more). */
const ROUND_SLICE = 100;

/** A job the tracker follows: its progress and the messages its next snapshot will let go. */
interface TrackedJob {
  readonly progress: JobProgress;
  /** Folded, not yet covered by a durable snapshot (the previous snapshot included). */
  held: ReceivedMessage[];
  /** Changed since its last snapshot. */
  dirty: boolean;
  /** A client asked for its status. */
  statusWanted: boolean;
  /** When its last event was folded (clock ms): a job silent past the retention is let go. */
  lastEventAt: number;
}

/** Where a tracker is (see the file comment); a term while it holds the snapshots topic. */
type TrackerState =
  | { status: 'created' }
  | { status: 'standby' }
  | { status: 'recovering'; term: TrackerTerm }
  | { status: 'active'; term: TrackerTerm }
  | { status: 'closing' }
  | { status: 'closed' };

/** The phase a tracker is in, as `JobTracker.phase` reports it. */
export type JobTrackerPhase = TrackerState['status'];

/** How long a recovering tracker reads before it says that it is still reading. */
const SLOW_RECOVERY_MS = 30_000;

/** Folds job events into progress, once per namespace at a time (see the file comment). */
export class JobTracker {
  private state: TrackerState = { status: 'created' };
  private statuses: Producer | null = null;
  /** Answers to status and list requests, on their own topic (`JOB_ANSWERS_TOPIC`): not queued behind a round's thousands of statuses. */
  private answers: Producer | null = null;
  /** Status requests (`JOB_REQUESTS_TOPIC`), read apart from the events so that they do not wait behind them. */
  private requests: Consumer | null = null;
  private readonly callbacks: JobCallbackDispatcher;
  private readonly jobs = new Map<string, TrackedJob>();
  /** Snapshots held, delivered by the term's snapshots consumer (the rest came from its events consumer). */
  private fromSnapshots = new WeakSet<ReceivedMessage>();
  private readonly stop = new AbortController();
  private closeRequested = false;
  /** Competes for terms and serves them, until the tracker closes. */
  private leading: Promise<void> | null = null;
  private requestLoop: Promise<void> | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private checkpointing: Promise<void> | null = null;
  /** Messages folded and held since the last round began: past half the permits, a round starts at once. */
  private heldSinceRound = 0;
  private readonly clock: Clock;
  private readonly log: Logger;
  /** Messages skipped as not understood, by problem: logged on the first and every 1,000th. */
  private readonly skipped = new Map<string, number>();
  private readonly metrics = new TrackerMetrics(() => this.jobs.size);

  constructor(private readonly options: JobTrackerOptions) {
    this.clock = options.clock ?? systemClock;
    this.log = options.logger.child({ component: 'job-tracker' });
    this.callbacks = new JobCallbackDispatcher(options.transport, this.clock);
  }

  /** Jobs in memory now (running, or finished within the retention). */
  get jobCount(): number {
    return this.jobs.size;
  }

  /** `standby` until this tracker's term comes, `recovering` while it reads the snapshots before it, then `active`. */
  get phase(): JobTrackerPhase {
    return this.state.status;
  }

  /** The epoch of the term this tracker holds (recovering or active); undefined otherwise. */
  get epoch(): number | undefined {
    return this.state.status === 'active' || this.state.status === 'recovering' ? this.state.term.epoch : undefined;
  }

  /** Opens what every phase needs and starts competing for the active tracker's term. */
  async start(): Promise<void> {
    if (this.state.status !== 'created') throw new Error(`job tracker: start() while ${this.state.status}`);
    const { transport } = this.options;
    [this.statuses, this.answers] = await Promise.all([
      transport.createProducer(JOB_STATE_TOPIC),
      transport.createProducer(JOB_ANSWERS_TOPIC),
    ]);
    this.requests = await transport.subscribe({
      topic: JOB_REQUESTS_TOPIC,
      subscription: `sheaf-job-requests-${randomUUID()}`,
      maxUnacked: 1000,
      durable: false,
    });
    this.state = { status: 'standby' };
    this.requestLoop = readUntil(this.requests, this.stop.signal, this.log, (message) => this.answer(message));
    this.leading = this.lead();
    this.timer = setInterval(() => void this.checkpoint(), this.options.checkpointIntervalMs ?? 1000);
  }

  /** Writes what changed (when active), ends its term, and hands what it held to the next tracker. Bounded by `deadlineMs`. */
  async close(deadlineMs = 5000): Promise<void> {
    if (this.closeRequested) return;
    this.closeRequested = true;
    const term = this.state.status === 'active' || this.state.status === 'recovering' ? this.state.term : null;
    if (this.timer) clearInterval(this.timer);
    if (term) {
      // Reading stops; the last round, still active, snapshots what was folded and acks what that covers.
      term.ended.abort();
      await within(this.checkpoint(), deadlineMs);
    }
    this.state = { status: 'closing' };
    this.stop.abort();
    if (term) await closeTerm(term);
    await Promise.allSettled([this.leading, this.requestLoop]);
    await Promise.allSettled([this.requests?.close(), this.statuses?.close(), this.answers?.close(), this.callbacks.close()]);
    this.metrics.close();
    this.state = { status: 'closed' };
  }

  /** Competes for a term, serves it until it ends, drops what it held, and competes again; until the tracker closes. */
  private async lead(): Promise<void> {
    const options = {
      transport: this.options.transport,
      log: this.log,
      maxUnacked: this.options.maxUnacked ?? 20_000,
      retryMs: this.options.standbyRetryMs ?? 1000,
      now: () => this.clock.now(),
    };
    while (this.state.status === 'standby') {
      let term: TrackerTerm;
      try {
        term = await acquireTerm(options, this.stop.signal);
      } catch {
        return; // aborted: the tracker closes
      }
      if (this.state.status !== 'standby') {
        await closeTerm(term);
        return;
      }
      this.state = { status: 'recovering', term };
      this.log.info({ epoch: term.epoch }, 'job tracker took over; reading the snapshots written before its term');
      const slow = setTimeout(
        () =>
          this.log.warn(
            { epoch: term.epoch, jobs: this.jobs.size },
            'job tracker still reading the snapshots before its term; no job finishes until it has (more running jobs than jobs.maxUnacked?)',
          ),
        SLOW_RECOVERY_MS,
      );
      const why = await this.serve(term);
      clearTimeout(slow);
      if (this.closeRequested) return; // close() ends the term itself, after its last round
      // Lost its term: what it held goes to the next tracker, unacked. Nothing more is written from this term.
      this.state = { status: 'standby' };
      this.jobs.clear();
      this.fromSnapshots = new WeakSet();
      this.heldSinceRound = 0;
      await closeTerm(term);
      this.log.warn({ epoch: term.epoch, why }, 'job tracker lost its term; standing by');
      try {
        await delay(options.retryMs, undefined, { signal: this.stop.signal });
      } catch {
        return;
      }
    }
  }

  /** Reads the term's two topics until it ends; says why it ended. */
  private async serve(term: TrackerTerm): Promise<string> {
    let why = 'the tracker closed';
    const end = (reason: string): void => {
      if (term.ended.signal.aborted) return;
      why = reason;
      term.lost = true;
      term.ended.abort();
    };
    void term.writer.fenced?.then(() => end('fenced: another tracker took sheaf-job-snapshots over'));
    const read = (consumer: Consumer): Promise<void> =>
      readUntil(consumer, term.ended.signal, this.log, (message) => this.fold(message, term, consumer === term.snapshots)).then(() =>
        end(`its consumer of ${consumer.topic} was lost`),
      );
    await Promise.all([read(term.events), read(term.snapshots)]);
    return why;
  }

  /** The term, when this tracker is active in it (not recovering, not stood down). */
  private activeTerm(): TrackerTerm | null {
    return this.state.status === 'active' ? this.state.term : null;
  }

  /** A status or list request from the requests topic: answered when this tracker is active (a status, when it holds the job). */
  private answer(message: ReceivedMessage): void {
    const decoded = decodeJobEvent(message.payload);
    if ('event' in decoded) {
      const { event } = decoded;
      if (event.kind === 'jobStatusRequest') this.answerStatus(event.jobId);
      else if (event.kind === 'jobListRequest') this.answerList(event);
    }
    this.requests?.ackAll([message]).catch(() => undefined);
  }

  private answerList(request: JobListRequest): void {
    const term = this.activeTerm();
    if (term) void this.publishList(request, term);
  }

  /** Publishes a job's status now, on the answers topic, when this tracker holds the job; not at the next round. */
  private answerStatus(jobId: string): void {
    const job = this.jobs.get(jobId);
    const term = this.activeTerm();
    if (job && term) void this.publishStatus(job, term, this.answers!);
  }

  private fold(message: ReceivedMessage, term: TrackerTerm, snapshotTopic: boolean): void {
    if (term.ended.signal.aborted) return; // a term that ended acks nothing: it all goes to the next
    if (snapshotTopic) this.fromSnapshots.add(message);
    const decoded = decodeJobEvent(message.payload);
    if ('problem' in decoded) {
      this.skip(message, decoded.problem);
      return;
    }
    const event = decoded.event;
    if (event.kind === 'trackerActivated') {
      this.ack([message]);
      if (event.trackerId === term.markerId && this.state.status === 'recovering' && this.state.term === term) {
        this.state = { status: 'active', term };
        this.log.info({ epoch: term.epoch, jobs: this.jobs.size }, 'job tracker active');
      }
      return;
    }
    if (event.kind === 'jobStatusRequest') {
      // From a client that sent it here (before the requests topic existed): answered the same way.
      this.answerStatus(event.jobId);
      this.ack([message]);
      return;
    }
    if (event.kind === 'jobListRequest') {
      // From a client that sent it here (before list requests went to the requests topic).
      this.answerList(event);
      this.ack([message]);
      return;
    }
    if (event.kind === 'jobDispatched') {
      // The broker keeps the checkpoint (as the producer's sequence id); nothing here to fold.
      this.ack([message]);
      return;
    }
    let job = this.jobs.get(event.jobId);
    if (!job) {
      const startedAt = event.kind === 'jobState' ? event.startedAt : event.at;
      job = { progress: new JobProgress(event.jobId, startedAt), held: [], dirty: false, statusWanted: false, lastEventAt: 0 };
      this.jobs.set(event.jobId, job);
    }
    job.lastEventAt = this.clock.now();
    let changed: boolean;
    try {
      changed = event.kind === 'jobState' ? job.progress.merge(event) : job.progress.apply(event);
    } catch (error) {
      this.skip(message, (error as Error).message);
      return;
    }
    if (changed && event.kind === 'jobCreated') this.metrics.started.add(1);
    if (changed || event.kind === 'jobState') {
      // A snapshot is held even when it adds nothing: it is the job's durable state until the next one.
      job.held.push(message);
      if (changed) job.dirty = true;
      // Held messages use up the consumer's permits: let them go before the broker has to stop.
      if (++this.heldSinceRound >= (this.options.maxUnacked ?? 20_000) / 2) void this.checkpoint();
    } else {
      // Already counted, by a message still held or a durable snapshot: this copy adds nothing.
      this.ack([message]);
    }
  }

  /**
   * Snapshots every changed job, then acks what each snapshot holds;
   * finishes and calls back. One round at a time; only while active (a
   * recovering tracker has not read every snapshot yet).
   */
  checkpoint(): Promise<void> {
    const term = this.activeTerm();
    if (!term || term.lost) return this.checkpointing ?? Promise.resolve();
    this.checkpointing ??= this.checkpointRound(term).finally(() => (this.checkpointing = null));
    return this.checkpointing;
  }

  private async checkpointRound(term: TrackerTerm): Promise<void> {
    this.heldSinceRound = 0;
    const now = this.clock.now();
    const work: Promise<void>[] = [];
    let sinceYield = 0;
    for (const [jobId, job] of [...this.jobs]) {
      // Thousands of changed jobs make a long round: status requests are answered in between.
      if (++sinceYield >= ROUND_SLICE) {
        sinceYield = 0;
        await new Promise((resolve) => setImmediate(resolve));
      }
      if (this.activeTerm() !== term || term.lost) break; // lost mid-round: nothing more from this term
      if (job.dirty) work.push(this.snapshot(job, term, now));
      else if (job.statusWanted) work.push(this.publishStatus(job, term));
      else if (this.expired(job, now)) {
        this.ack(job.held);
        this.jobs.delete(jobId);
      }
    }
    await Promise.all(work);
  }

  private async snapshot(job: TrackedJob, term: TrackerTerm, now: number): Promise<void> {
    const { progress } = job;
    const justFinished = progress.markFinished(now);
    if (justFinished) {
      const status = progress.status();
      this.log.info({ job: status }, 'job finished');
      this.metrics.finished.add(1, { outcome: status.failed + status.deadLettered === 0 ? 'succeeded' : 'failed' });
    }
    // Taken together, synchronously: the snapshot holds exactly the messages it lets go.
    const covered = job.held;
    job.held = [];
    job.dirty = false;
    try {
      await term.writer.send({ payload: encodeJobEvent(progress.snapshot()), key: progress.jobId });
    } catch (error) {
      if (term.lost || error instanceof ProducerFencedError) return; // the term is lost: the next tracker has it all
      job.held = [...covered, ...job.held];
      job.dirty = true;
      this.log.warn({ err: error, jobId: progress.jobId }, 'writing a job snapshot failed; the next round tries again');
      return;
    }
    this.ack(covered);
    await this.publishStatus(job, term);
    if (progress.finished && !progress.callbacksDispatched) await this.callBack(job, term);
  }

  /**
   * Answers a list request: the statuses of the jobs held here, the most
   * recently started first, `limit` of them, or (`all`) every one in parts
   * (`encodeJobList`), all encoded in one go: letting other work in between
   * parts let a loaded tracker take seconds over an answer.
   */
  private async publishList(request: JobListRequest, term: TrackerTerm): Promise<void> {
    const { requestId } = request;
    const statuses = this.recentStatuses(request.all ? this.jobs.size : request.limit);
    const sends = encodeJobList(requestId, statuses, term.epoch, request.all === true).map((payload) =>
      this.answers!.send({ payload, key: requestId }),
    );
    await Promise.all(sends).catch((error: unknown) => {
      this.log.warn({ err: error, requestId }, 'answering a job list request failed; the client asks again');
    });
  }

  /** The statuses of up to `limit` jobs held here, the most recently started first (for `sheaf job list` and the dashboard). */
  recentStatuses(limit: number): JobStatus[] {
    const statuses = [...this.jobs.values()].map((job) => job.progress.status());
    statuses.sort((a, b) => b.startedAt - a.startedAt);
    return statuses.slice(0, limit);
  }

  /** Publishes a job's status stamped with the term's epoch; nothing once the term is over. */
  private async publishStatus(job: TrackedJob, term: TrackerTerm, through = this.statuses!): Promise<void> {
    job.statusWanted = false;
    if (term.lost) return;
    try {
      await through.send({
        payload: encodeJobEvent({ v: 1, kind: 'jobStatus', status: job.progress.status(), epoch: term.epoch }),
        key: job.progress.jobId,
      });
    } catch (error) {
      job.statusWanted = true;
      this.log.warn({ err: error, jobId: job.progress.jobId }, 'publishing a job status failed; the next round tries again');
    }
  }

  /** Dispatches the finished job's callbacks with stable task ids, then records it (next snapshot). */
  private async callBack(job: TrackedJob, term: TrackerTerm): Promise<void> {
    const { progress } = job;
    // A term that is over leaves them to the next tracker, which has the mark and dispatches them with the same ids.
    if (term.lost) return;
    try {
      await this.callbacks.dispatch(progress);
    } catch (error) {
      this.log.warn({ err: error, jobId: progress.jobId }, 'dispatching a job callback failed; the next round tries again');
      job.dirty = true; // the snapshot is written again, and the callbacks retried after it
      return;
    }
    progress.markCallbacksSent();
    job.dirty = true;
  }

  /**
   * Let go past the retention: a finished job whose callbacks went out, and
   * a job nothing was heard of (never sealed, its tasks never settled: its
   * client gone), which would otherwise hold memory and a snapshot for ever.
   */
  private expired(job: TrackedJob, now: number): boolean {
    const retentionMs = this.options.retentionMs ?? 24 * 3600_000;
    const { finishedAt } = job.progress.status();
    if (finishedAt !== null) return job.progress.callbacksDispatched && now - finishedAt > retentionMs;
    if (now - job.lastEventAt <= retentionMs) return false;
    this.log.warn(
      { job: job.progress.status() },
      'job abandoned: nothing heard of it within the retention (jobs.retentionHours); its state is dropped',
    );
    return true;
  }

  /**
   * Acks on the consumer each message came from, while this tracker holds a
   * term (a standby acks nothing). A term that was just lost may still ack
   * what a snapshot stored before the loss covers: harmless, it is durable.
   */
  private ack(messages: readonly ReceivedMessage[]): void {
    const term = this.state.status === 'active' || this.state.status === 'recovering' ? this.state.term : null;
    if (messages.length === 0 || !term) return;
    const snapshots = messages.filter((m) => this.fromSnapshots.has(m));
    const events = snapshots.length === 0 ? messages : messages.filter((m) => !this.fromSnapshots.has(m));
    // An ack that fails leaves the message to come again; folding it again is harmless.
    const failed = (error: unknown): void => this.log.debug({ err: error }, 'acking job events failed');
    if (events.length > 0) term.events.ackAll(events).catch(failed);
    if (snapshots.length > 0) term.snapshots.ackAll(snapshots).catch(failed);
  }

  private skip(message: ReceivedMessage, problem: string): void {
    const seen = (this.skipped.get(problem) ?? 0) + 1;
    this.skipped.set(problem, seen);
    if (this.skipped.size > 100) this.skipped.clear();
    if (seen === 1 || seen % 1000 === 0) {
      this.log.warn({ problem, seen, messageId: message.id }, 'job event not understood; skipped');
    }
    this.ack([message]);
  }
}
