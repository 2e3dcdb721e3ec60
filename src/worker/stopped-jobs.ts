/**
 * Jobs that stopped at their first final failure (`continueOnError: false`),
 * as a worker learns them from the statuses the job tracker publishes on
 * `sheaf-job-state`. The worker cancels the tasks of such a job: it
 * acknowledges them without running them, and tells a client that waits for
 * one (reason `jobStopped`).
 *
 * Best effort, by design: a task that reaches a worker before the status
 * does runs, and its outcome is counted like any other. What is promised is
 * that the job is finished at its first failure, and that what comes after
 * the news is not run. Statuses are read through a non-durable subscription
 * (a worker that starts learns of jobs that stop from then on), and the last
 * `MAX_STOPPED_JOBS` stopped jobs are kept.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { JOB_STATE_TOPIC } from '../topics.js';
import { isAbortError, type Consumer, type Transport } from '../transport/transport.js';
import { decodeJobState } from '../wire/job-events.js';

/** What a status of a stopped job holds, as the tracker writes it (JSON without spaces). */
const STOPPED_MARK = '"stopped":true';

/** Stopped jobs a worker remembers at most (the oldest goes first). */
export const MAX_STOPPED_JOBS = 10_000;

/** Whether a job stopped, as far as this worker has heard. */
export interface StoppedJobLookup {
  has(jobId: string): boolean;
}

/** The stopped jobs one worker has heard of, from `sheaf-job-state` (see the top of this file). */
export class StoppedJobs implements StoppedJobLookup {
  private readonly stopped = new Set<string>();
  private readonly stop = new AbortController();
  private readonly loop: Promise<void>;

  private constructor(
    private readonly consumer: Consumer,
    private readonly log: Logger,
  ) {
    this.loop = this.read();
  }

  /** Starts reading statuses; null (and a warning) when the topic cannot be read: no task is then cancelled. */
  static async open(transport: Transport, log: Logger): Promise<StoppedJobs | null> {
    try {
      const consumer = await transport.subscribe({
        topic: JOB_STATE_TOPIC,
        subscription: `sheaf-job-stops-${randomUUID()}`,
        maxUnacked: 1000,
        durable: false,
      });
      return new StoppedJobs(consumer, log);
    } catch (error) {
      log.warn(
        { err: error, topic: JOB_STATE_TOPIC },
        `job statuses cannot be read (${JOB_STATE_TOPIC}; the worker needs consume on it): tasks of jobs that stopped at their first failure run anyway`,
      );
      return null;
    }
  }

  /** True once the job's status said it stopped. */
  has(jobId: string): boolean {
    return this.stopped.has(jobId);
  }

  /** Stops reading statuses. */
  async close(): Promise<void> {
    this.stop.abort();
    await this.consumer.close().catch(() => undefined);
    await this.loop;
  }

  private async read(): Promise<void> {
    const signal = this.stop.signal;
    while (!signal.aborted) {
      let messages;
      try {
        messages = await this.consumer.receiveMany(1000, signal);
      } catch (error) {
        if (!signal.aborted && !isAbortError(error)) {
          this.log.warn({ err: error }, 'reading job statuses stopped; tasks of jobs that stop from now on run anyway');
        }
        return;
      }
      for (const message of messages) {
        // Every job's statuses pass here (thousands a second with many jobs): read only those that can say stopped.
        if (!Buffer.from(message.payload.buffer, message.payload.byteOffset, message.payload.byteLength).includes(STOPPED_MARK)) continue;
        const decoded = decodeJobState(message.payload);
        if ('status' in decoded && decoded.status.stopped) this.remember(decoded.status.jobId);
      }
      await this.consumer.ackAll(messages).catch(() => undefined);
    }
  }

  private remember(jobId: string): void {
    if (this.stopped.has(jobId)) return;
    this.stopped.add(jobId);
    if (this.stopped.size > MAX_STOPPED_JOBS) this.stopped.delete(this.stopped.values().next().value as string);
  }
}
