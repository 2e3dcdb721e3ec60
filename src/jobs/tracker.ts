/**
 * The job tracker: folds a namespace's job events into each job's progress,
 * marks a job finished once, publishes statuses for clients, and dispatches
 * a finished job's callbacks. Runs inside `sheaf worker`; of all the
 * workers' trackers, one at a time is active (a Failover subscription on
 * `sheaf-job-events`), the others wait and take over when it goes.
 *
 * Durability without a store of its own: the tracker writes each job's
 * snapshot (`jobState`) back into the job-events topic, and acks the events
 * a snapshot holds only once the broker has it. So what is unacked for a job
 * is its latest snapshot and the events since; a tracker that takes over is
 * delivered exactly that, and merges it (`JobProgress.merge` counts each task
 * index once, in whatever order snapshots and events come).
 *
 * Once: the finished mark is a snapshot with `finishedAt`, written by the
 * active tracker after the job is sealed and every task settled. A tracker
 * that takes over merges the mark and does not set it again. Callbacks
 * (`onSuccess`, `onComplete`) are tasks with stable ids
 * (`<jobId>:onSuccess`), dispatched after the mark is durable and recorded in
 * the next snapshot: a tracker killed in between dispatches them again, with
 * the same ids (at least once; docs/jobs.md). Not yet fenced against a
 * paused tracker that lost its turn and wakes up to write (an exclusive
 * producer is the plan): until then "once" holds for crashes, not for a
 * process frozen past the broker's failover.
 *
 * Lifecycle: created → running → closing → closed. `close()` writes one
 * last round of snapshots (bounded) and closes its consumer: whatever it
 * held unacked goes to the next tracker.
 */
import { metrics, type Counter, type ObservableGauge, type ObservableResult } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { randomUUID } from 'node:crypto';
import {
  JOB_ANSWERS_TOPIC,
  JOB_EVENTS_TOPIC,
  JOB_REQUESTS_TOPIC,
  JOB_STATE_TOPIC,
  JOB_TRACKER_SUBSCRIPTION,
  taskTopic,
  WORKER_SUBSCRIPTION,
} from '../topics.js';
import { KeptProducers } from '../transport/kept-producers.js';
import type { Consumer, Producer, ReceivedMessage, Transport } from '../transport/transport.js';
import { isAbortError } from '../transport/transport.js';
import { TransportClosedError } from '../errors.js';
import { systemClock, type Clock } from '../util/clock.js';
import { within } from '../util/within.js';
import { encodeEnvelope, jobCallbackTask } from '../wire/envelopes.js';
import { decodeJobEvent, encodeJobEvent, type JobStatus } from '../wire/job-events.js';
import { JobProgress } from './progress.js';

/** How a tracker runs; every field has a default. */
export interface JobTrackerOptions {
  readonly transport: Transport;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** How often changed jobs are snapshotted (and their events acked), in ms. Default 1000. */
  readonly checkpointIntervalMs?: number;
  /** How long a finished job is kept (its last snapshot unacked, its status answerable), in ms. Default 24 h. */
  readonly retentionMs?: number;
  /** Events held unacked at most (the consumer's permits). Default 20,000. */
  readonly maxUnacked?: number;
}

/** A job the tracker follows: its progress and the messages its next snapshot will let go. */
/** Jobs a checkpoint round handles before it lets other work run (a status request waits for no more). */
const ROUND_SLICE = 100;

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

type TrackerState = { status: 'created' } | { status: 'running' } | { status: 'closing' } | { status: 'closed' };

/** Folds job events into progress, once per namespace at a time (see the file comment). */
export class JobTracker {
  private state: TrackerState = { status: 'created' };
  private consumer: Consumer | null = null;
  private snapshots: Producer | null = null;
  private statuses: Producer | null = null;
  /** Answers to status and list requests, on their own topic (`JOB_ANSWERS_TOPIC`): not queued behind a round's thousands of statuses. */
  private answers: Producer | null = null;
  /** Status requests (`JOB_REQUESTS_TOPIC`), read apart from the events so that they do not wait behind them. */
  private requests: Consumer | null = null;
  /** Callbacks go to task topics, made with the workers' subscription as a client does. */
  private readonly callbackProducers: KeptProducers;
  private readonly jobs = new Map<string, TrackedJob>();
  private readonly stop = new AbortController();
  private loop: Promise<void> | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private checkpointing: Promise<void> | null = null;
  /** Messages folded and held since the last round began: past half the permits, a round starts at once. */
  private heldSinceRound = 0;
  private readonly clock: Clock;
  private readonly log: Logger;
  /** Messages skipped as not understood, by problem: logged on the first and every 1,000th. */
  private readonly skipped = new Map<string, number>();
  /**
   * Jobs seen created and marked finished by this process's tracker while it
   * was active (a tracker that takes over may count a job's creation again).
   */
  private readonly started: Counter;
  private readonly finishedJobs: Counter;
  private readonly tracked: ObservableGauge;
  private readonly observeTracked = (result: ObservableResult): void => result.observe(this.jobs.size);

  constructor(private readonly options: JobTrackerOptions) {
    this.clock = options.clock ?? systemClock;
    this.log = options.logger.child({ component: 'job-tracker' });
    this.callbackProducers = new KeptProducers(options.transport, { subscription: WORKER_SUBSCRIPTION });
    const meter = metrics.getMeter('sheaf');
    this.started = meter.createCounter('sheaf_jobs_started_total', { description: 'jobs whose creation this tracker folded' });
    this.finishedJobs = meter.createCounter('sheaf_jobs_finished_total', {
      description: 'jobs this tracker marked finished, by outcome (succeeded: nothing failed)',
    });
    this.tracked = meter.createObservableGauge('sheaf_jobs_tracked', {
      description: 'jobs in the tracker: running, or finished within the retention',
    });
    this.tracked.addCallback(this.observeTracked);
  }

  /** Jobs in memory now (running, or finished within the retention). */
  get jobCount(): number {
    return this.jobs.size;
  }

  /** Subscribes (as a standby until this tracker's turn comes) and starts folding. */
  async start(): Promise<void> {
    if (this.state.status !== 'created') throw new Error(`job tracker: start() while ${this.state.status}`);
    const { transport } = this.options;
    this.consumer = await transport.subscribe({
      topic: JOB_EVENTS_TOPIC,
      subscription: JOB_TRACKER_SUBSCRIPTION,
      maxUnacked: this.options.maxUnacked ?? 20_000,
      subscriptionType: 'failover',
    });
    [this.snapshots, this.statuses, this.answers] = await Promise.all([
      transport.createProducer(JOB_EVENTS_TOPIC),
      transport.createProducer(JOB_STATE_TOPIC),
      transport.createProducer(JOB_ANSWERS_TOPIC),
    ]);
    this.requests = await transport.subscribe({
      topic: JOB_REQUESTS_TOPIC,
      subscription: `sheaf-job-requests-${randomUUID()}`,
      maxUnacked: 1000,
      durable: false,
    });
    this.state = { status: 'running' };
    this.loop = Promise.all([
      this.receive(this.consumer, (message) => this.fold(message)),
      this.receive(this.requests, (message) => this.answer(message)),
    ]).then(() => undefined);
    this.timer = setInterval(() => void this.checkpoint(), this.options.checkpointIntervalMs ?? 1000);
  }

  /** Writes what changed, stops, and hands what it held to the next tracker. Bounded by `deadlineMs`. */
  async close(deadlineMs = 5000): Promise<void> {
    if (this.state.status === 'closed' || this.state.status === 'closing') return;
    const started = this.state.status === 'running';
    this.state = { status: 'closing' };
    if (this.timer) clearInterval(this.timer);
    this.stop.abort();
    if (started) {
      await this.loop;
      await within(this.checkpoint(), deadlineMs);
    }
    await Promise.allSettled([
      this.consumer?.close(),
      this.requests?.close(),
      this.snapshots?.close(),
      this.statuses?.close(),
      this.answers?.close(),
      this.callbackProducers.close(),
    ]);
    this.tracked.removeCallback(this.observeTracked);
    this.state = { status: 'closed' };
  }

  private async receive(consumer: Consumer, handle: (message: ReceivedMessage) => void): Promise<void> {
    while (this.state.status === 'running') {
      let messages: ReceivedMessage[];
      try {
        messages = await consumer.receiveMany(1000, this.stop.signal);
      } catch (error) {
        if (isAbortError(error) || this.state.status !== 'running') return;
        if (error instanceof TransportClosedError) {
          this.log.warn({ err: error }, 'the job tracker lost its consumer; this worker tracks no more jobs until it restarts');
          return;
        }
        // Not in a tight loop: a second before the next try.
        this.log.warn({ err: error }, 'receiving job events failed; trying again in 1 s');
        await new Promise((resolve) => setTimeout(resolve, 1000));
        continue;
      }
      for (const message of messages) handle(message);
    }
  }

  /** A status request from the requests topic: answered when this tracker holds the job (a standby holds none). */
  private answer(message: ReceivedMessage): void {
    const decoded = decodeJobEvent(message.payload);
    if ('event' in decoded && decoded.event.kind === 'jobStatusRequest') this.answerStatus(decoded.event.jobId);
    this.requests?.ackAll([message]).catch(() => undefined);
  }

  /** Publishes a job's status now, on the answers topic, when this tracker holds the job; not at the next round. */
  private answerStatus(jobId: string): void {
    const job = this.jobs.get(jobId);
    if (job) void this.publishStatus(job, this.answers!);
  }

  private fold(message: ReceivedMessage): void {
    const decoded = decodeJobEvent(message.payload);
    if ('problem' in decoded) {
      this.skip(message, decoded.problem);
      return;
    }
    const event = decoded.event;
    if (event.kind === 'jobStatusRequest') {
      // From a client that sent it here (before the requests topic existed): answered the same way.
      this.answerStatus(event.jobId);
      this.ack([message]);
      return;
    }
    if (event.kind === 'jobListRequest') {
      this.ack([message]);
      void this.publishList(event.requestId, event.limit);
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
    if (changed && event.kind === 'jobCreated') this.started.add(1);
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

  /** Snapshots every changed job, then acks what each snapshot holds; finishes and calls back. One round at a time. */
  checkpoint(): Promise<void> {
    this.checkpointing ??= this.checkpointRound().finally(() => (this.checkpointing = null));
    return this.checkpointing;
  }

  private async checkpointRound(): Promise<void> {
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
      if (job.dirty) work.push(this.snapshot(job, now));
      else if (job.statusWanted) work.push(this.publishStatus(job));
      else if (this.expired(job, now)) {
        this.ack(job.held);
        this.jobs.delete(jobId);
      }
    }
    await Promise.all(work);
  }

  private async snapshot(job: TrackedJob, now: number): Promise<void> {
    const { progress } = job;
    const justFinished = progress.markFinished(now);
    if (justFinished) {
      const status = progress.status();
      this.log.info({ job: status }, 'job finished');
      this.finishedJobs.add(1, { outcome: status.failed + status.deadLettered === 0 ? 'succeeded' : 'failed' });
    }
    // Taken together, synchronously: the snapshot holds exactly the messages it lets go.
    const covered = job.held;
    job.held = [];
    job.dirty = false;
    try {
      await this.snapshots!.send({ payload: encodeJobEvent(progress.snapshot()), key: progress.jobId });
    } catch (error) {
      job.held = [...covered, ...job.held];
      job.dirty = true;
      this.log.warn({ err: error, jobId: progress.jobId }, 'writing a job snapshot failed; the next round tries again');
      return;
    }
    this.ack(covered);
    await this.publishStatus(job);
    if (progress.finished && !progress.callbacksDispatched) await this.callBack(job);
  }

  /** Answers a list request: the statuses of the jobs held here, the most recently started first. */
  private async publishList(requestId: string, limit: number): Promise<void> {
    const statuses = this.recentStatuses(limit);
    try {
      await this.answers!.send({ payload: encodeJobEvent({ v: 1, kind: 'jobList', requestId, statuses }), key: requestId });
    } catch (error) {
      this.log.warn({ err: error, requestId }, 'answering a job list request failed; the client asks again');
    }
  }

  /** The statuses of up to `limit` jobs held here, the most recently started first (for `sheaf job list` and the dashboard). */
  recentStatuses(limit: number): JobStatus[] {
    const statuses = [...this.jobs.values()].map((job) => job.progress.status());
    statuses.sort((a, b) => b.startedAt - a.startedAt);
    return statuses.slice(0, limit);
  }

  private async publishStatus(job: TrackedJob, through = this.statuses!): Promise<void> {
    job.statusWanted = false;
    try {
      await through.send({
        payload: encodeJobEvent({ v: 1, kind: 'jobStatus', status: job.progress.status() }),
        key: job.progress.jobId,
      });
    } catch (error) {
      job.statusWanted = true;
      this.log.warn({ err: error, jobId: job.progress.jobId }, 'publishing a job status failed; the next round tries again');
    }
  }

  /** Dispatches the finished job's callbacks with stable task ids, then records it (next snapshot). */
  private async callBack(job: TrackedJob): Promise<void> {
    const { progress } = job;
    const target = progress.callbackTarget;
    const status = progress.status();
    const methods: string[] = [];
    if (target?.onSuccess && status.failed === 0 && status.deadLettered === 0) methods.push(target.onSuccess);
    if (target?.onComplete) methods.push(target.onComplete);
    try {
      for (const method of methods) await this.dispatchCallback(target!.service, method, progress.jobId, status);
    } catch (error) {
      this.log.warn({ err: error, jobId: progress.jobId }, 'dispatching a job callback failed; the next round tries again');
      job.dirty = true; // the snapshot is written again, and the callbacks retried after it
      return;
    }
    progress.markCallbacksSent();
    job.dirty = true;
  }

  private async dispatchCallback(service: string, method: string, jobId: string, status: JobStatus): Promise<void> {
    const envelope = jobCallbackTask({ service, method }, `${jobId}:${method}`, jobId, status, this.clock.now());
    await (
      await this.callbackProducers.get(taskTopic(service))
    ).send({ payload: encodeEnvelope(envelope), key: jobId, properties: { 'sheaf-task-id': envelope.taskId } });
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

  private ack(messages: readonly ReceivedMessage[]): void {
    if (messages.length === 0 || !this.consumer) return;
    // An ack that fails leaves the message to come again; folding it again is harmless.
    this.consumer.ackAll(messages).catch((error: unknown) => this.log.debug({ err: error }, 'acking job events failed'));
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
