/**
 * How a resumable job's tasks are sent (docs/jobs.md, "Resume"), so that a
 * dispatcher killed midway continues where the broker says it stopped and
 * sends no task twice.
 *
 * Every task of the job goes through a producer named after the job (one
 * per task topic) with the task's index as its sequence id, on a namespace
 * with producer deduplication on (`sheaf setup`). The broker thus keeps, per
 * topic partition, the highest index it stored, and drops a task sent again.
 *
 * The checkpoint is the count of leading indexes known stored (every index
 * below it confirmed by the broker). It is written as the sequence id of a
 * `jobDispatched` event through a producer of the same name on the
 * job-events topic, at most once a second and when dispatch ends: a
 * dispatcher that resumes reads it back as that producer's
 * `lastSequenceId`, skips that many items, and sends the rest. Tasks past
 * the checkpoint that were stored before the crash come back from the broker
 * as `DEDUPLICATED`: counted, not stored again. Why not the task topics'
 * own last sequence ids: a job's tasks spread over partitions and topics, and
 * the highest index stored on one says nothing of a lower one still under
 * way to another.
 *
 * The broker forgets a producer name's sequence ids once no producer of
 * that name was connected for `brokerDeduplicationProducerInactivityTimeoutMinutes`
 * (6 hours by default): resume within that time.
 */
import type { Logger } from 'pino';
import { JobResumeError, TransportClosedError } from '../errors.js';
import { JOB_EVENTS_TOPIC, JOB_TRACKER_SUBSCRIPTION, WORKER_SUBSCRIPTION } from '../topics.js';
import { KeptProducers } from '../transport/kept-producers.js';
import { DEDUPLICATED, type OutgoingMessage, type Producer, type Transport } from '../transport/transport.js';
import { encodeJobEvent, type JobCreated } from '../wire/job-events.js';

/** How often, at most, the checkpoint is written while tasks are dispatched. */
const CHECKPOINT_INTERVAL_MS = 1000;

/** The producer name of a job's dispatch, on the task topics and the job-events topic. */
export const jobProducerName = (jobId: string): string => `sheaf-${jobId}`;

/** A resumable job's sends and its checkpoint. */
export class ResumableDispatch {
  /** Every index below this is confirmed stored (or counted, when its dispatch failed). */
  private confirmedBelow: number;
  /** Confirmed indexes at or above `confirmedBelow`: at most the dispatches under way. */
  private readonly confirmedAbove = new Set<number>();
  /** The last checkpoint written, or tried: a sequence id once tried is never sent again. */
  private checkpointed: number;
  private writing: Promise<void> = Promise.resolve();
  private readonly timer: ReturnType<typeof setInterval>;
  private readonly taskProducers: KeptProducers;
  private closed: Promise<void> | null = null;
  /** Tasks the broker had stored already (sent before a resume): dropped, not stored twice. */
  deduplicated = 0;

  private constructor(
    readonly jobId: string,
    transport: Transport,
    private readonly events: Producer,
    /** The checkpoint the job resumed from (0 for a new job). */
    readonly resumedAt: number,
    private readonly log: Logger,
  ) {
    this.confirmedBelow = resumedAt;
    this.checkpointed = resumedAt;
    this.taskProducers = new KeptProducers(transport, { subscription: WORKER_SUBSCRIPTION }, { name: jobProducerName(jobId) });
    this.timer = setInterval(() => void this.checkpoint().catch(() => undefined), CHECKPOINT_INTERVAL_MS);
    this.timer.unref();
  }

  /**
   * A new job's dispatch: its creation event goes first, through the job's
   * named producer (sequence id 0), so that a resume can tell a job it has
   * never seen from one that dispatched nothing yet.
   */
  static async create(transport: Transport, created: JobCreated, log: Logger): Promise<ResumableDispatch> {
    const events = await ResumableDispatch.eventsProducer(transport, created.jobId);
    try {
      await events.send({ payload: encodeJobEvent(created), key: created.jobId, sequenceId: 0 });
    } catch (error) {
      await events.close().catch(() => undefined);
      throw error;
    }
    return new ResumableDispatch(created.jobId, transport, events, 0, log);
  }

  /** A job's dispatch continued from the checkpoint the broker holds; `JobResumeError` when it holds none. */
  static async resume(transport: Transport, jobId: string, log: Logger): Promise<ResumableDispatch> {
    const events = await ResumableDispatch.eventsProducer(transport, jobId);
    if (events.lastSequenceId < 0) {
      await events.close().catch(() => undefined);
      throw new JobResumeError(
        jobId,
        `job ${jobId} cannot be resumed: the broker holds no checkpoint of its dispatch. Check the id (it must be of a job ` +
          'started as resumable: sheaf job run, or client.job({ resumable: true })); that the namespace has deduplication on ' +
          '(sheaf setup turns it on); and that the dispatcher stopped less than the broker keeps a producer name (6 h by default)',
      );
    }
    return new ResumableDispatch(jobId, transport, events, events.lastSequenceId, log);
  }

  private static async eventsProducer(transport: Transport, jobId: string): Promise<Producer> {
    await transport.ensureSubscription(JOB_EVENTS_TOPIC, JOB_TRACKER_SUBSCRIPTION, 'failover');
    return transport.createProducer(JOB_EVENTS_TOPIC, { name: jobProducerName(jobId) });
  }

  /** Sends task `index` of the job to `topic`, with the index as its sequence id; resolves with its message id or `DEDUPLICATED`. */
  async send(topic: string, message: OutgoingMessage, index: number): Promise<string> {
    const producer = await this.taskProducers.get(topic);
    const id = await producer.send({ ...message, sequenceId: index });
    if (id === DEDUPLICATED) this.deduplicated += 1;
    return id;
  }

  /** Index `index` is stored (or its failed dispatch counted): the checkpoint may pass it. */
  confirm(index: number): void {
    if (index < this.confirmedBelow) return;
    this.confirmedAbove.add(index);
    while (this.confirmedAbove.delete(this.confirmedBelow)) this.confirmedBelow += 1;
  }

  /** Writes the checkpoint if it moved; one write at a time, in order (each sequence id above the last). */
  checkpoint(): Promise<void> {
    this.writing = this.writing.then(async () => {
      const dispatched = this.confirmedBelow;
      if (dispatched <= this.checkpointed) return;
      this.checkpointed = dispatched;
      try {
        await this.events.send({
          payload: encodeJobEvent({ v: 1, kind: 'jobDispatched', jobId: this.jobId, dispatched, at: Date.now() }),
          key: this.jobId,
          sequenceId: dispatched,
        });
      } catch (error) {
        if (error instanceof TransportClosedError) {
          clearInterval(this.timer); // its transport is gone: no later checkpoint can be written either
          return;
        }
        // The next checkpoint tries again; a resume meanwhile sends a little more again, which the broker drops.
        this.log.warn({ err: error, jobId: this.jobId }, 'writing the job checkpoint failed; the next one tries again');
      }
    });
    return this.writing;
  }

  /** The last checkpoint, then closes the job's producers. Idempotent. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      clearInterval(this.timer);
      await this.checkpoint();
      await Promise.allSettled([this.taskProducers.close(), this.events.close()]);
    })();
    return this.closed;
  }
}
