/**
 * A client's jobs (docs/jobs.md): creating, resuming, attaching and listing
 * them, over the one status feed the client opens with its first job, and
 * the resumable dispatches it must close. `SheafClient` delegates its job
 * methods here.
 */
import type { Logger } from 'pino';
import { ConfigError } from '../errors.js';
import { NAME_PATTERN } from '../topics.js';
import type { Transport } from '../transport/transport.js';
import { JOB_ID_PATTERN, type JobCallbacks, type JobCreated, type JobStatus } from '../wire/job-events.js';
import { Job, type JobBinding, type JobOptions } from './job.js';
import { JobStatusFeed } from './job-status-feed.js';
import { JobResults } from './job-results.js';
import { ResumableDispatch } from './resumable-dispatch.js';
import type { DispatchOptions, TaskHandles } from './task-handle.js';
import { within } from '../util/within.js';

/** How long the first `attachJob()` waits for the client's table of job statuses (the load goes on after). */
const ATTACH_TABLE_WAIT_MS = 2000;

/** How a job's tasks are sent: the client's dispatch, with the job as binding. */
export type JobDispatcher = <T extends object>(stub: T, options: DispatchOptions, binding: JobBinding) => TaskHandles<T>;

/** The jobs of one client: what `SheafClient.job()`, `resumeJob()`, `attachJob()` and `listJobs()` do. */
export class ClientJobs {
  private feed: Promise<JobStatusFeed> | null = null;
  /** Resumable jobs started or resumed here: their producers close, after a last checkpoint, with the client. */
  private readonly resumable = new Set<ResumableDispatch>();

  constructor(
    private readonly transport: Transport,
    private readonly clientName: string,
    private readonly log: Logger,
    private readonly dispatcher: JobDispatcher,
  ) {}

  /** A new job: its creation published (through the job's named producer when resumable) before it is returned. */
  async create(options: JobOptions): Promise<Job> {
    checkCallbacks(options.callbacks);
    const feed = await this.statusFeed();
    const jobId = Job.newId();
    feed.follow(jobId);
    const created: JobCreated = {
      v: 1,
      kind: 'jobCreated',
      jobId,
      ...(options.name !== undefined ? { name: options.name } : {}),
      meta: { ...(options.meta ?? {}) },
      ...(options.callbacks ? { callbacks: options.callbacks } : {}),
      continueOnError: options.continueOnError ?? true,
      at: Date.now(),
    };
    const kept = options.keepResults ? new JobResults() : null;
    if (!options.resumable) {
      await feed.publish(created);
      return new Job(jobId, feed, this.dispatcher, null, itemErrorTarget(options.callbacks), kept);
    }
    const resumable = await ResumableDispatch.create(this.transport, created, this.log);
    this.resumable.add(resumable);
    return new Job(jobId, feed, this.dispatcher, resumable, itemErrorTarget(options.callbacks), kept);
  }

  /** A resumable job continued from the checkpoint the broker holds (`JobResumeError` when none). */
  async resume(jobId: string, options: { callbacks?: JobCallbacks }): Promise<Job> {
    if (!JOB_ID_PATTERN.test(jobId)) {
      throw new ConfigError([{ path: 'jobId', message: `'${jobId}' is not a job id: use the id client.job() or sheaf job run gave` }]);
    }
    checkCallbacks(options.callbacks);
    const feed = await this.statusFeed();
    feed.follow(jobId);
    const resumable = await ResumableDispatch.resume(this.transport, jobId, this.log);
    this.resumable.add(resumable);
    return new Job(jobId, feed, this.dispatcher, resumable, itemErrorTarget(options.callbacks));
  }

  /**
   * A job created elsewhere, followed here (status and done only). The
   * first attach loads the client's table of job statuses (every job's, see
   * `JobStatusFeed.loadTable`), so that statuses answer from memory; it
   * waits for it at most `ATTACH_TABLE_WAIT_MS` (the load goes on: until it
   * is in, a status is asked of the tracker job by job).
   */
  async attach(jobId: string): Promise<Job> {
    const feed = await this.statusFeed();
    feed.follow(jobId);
    await within(feed.loadTable(), ATTACH_TABLE_WAIT_MS);
    return new Job(jobId, feed, null);
  }

  /** The statuses the tracker holds, newest first (see `SheafClient.listJobs`). */
  async list(options: { limit?: number; timeoutMs?: number }): Promise<JobStatus[]> {
    const feed = await this.statusFeed();
    return feed.list(options.limit ?? 100, options.timeoutMs ?? 10_000);
  }

  /** Closes the status feed and the resumable dispatches (each writes its last checkpoint: a resume then sends as little again as it can). */
  async close(): Promise<void> {
    const feed = await this.feed?.catch(() => null);
    await feed?.close();
    await Promise.allSettled([...this.resumable].map((job) => job.close()));
  }

  private statusFeed(): Promise<JobStatusFeed> {
    if (!this.feed) {
      const opening = JobStatusFeed.open(this.transport, this.clientName, this.log);
      opening.catch(() => (this.feed = null));
      this.feed = opening;
    }
    return this.feed;
  }
}

/** Where a job's tasks send their item-error callback, from the job's callbacks. */
function itemErrorTarget(callbacks: JobCallbacks | undefined): { service: string; method: string } | null {
  return callbacks?.onItemError ? { service: callbacks.service, method: callbacks.onItemError } : null;
}

/** A job's callbacks name a service and methods: checked here, as a task's worker would refuse them. */
function checkCallbacks(callbacks: JobCallbacks | undefined): void {
  if (!callbacks) return;
  const issues = (['service', 'onSuccess', 'onComplete', 'onItemError'] as const)
    .filter((key) => callbacks[key] !== undefined && !NAME_PATTERN.test(callbacks[key]))
    .map((key) => ({
      path: `callbacks.${key}`,
      message: `'${callbacks[key]}' is not a ${key === 'service' ? 'service' : 'method'} name: start with a letter; use letters, digits, "_" and "-"`,
    }));
  if (issues.length > 0) throw new ConfigError(issues, { source: 'client.job() options' });
}
