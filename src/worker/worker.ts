/**
 * SheafWorker: runs the services of one deployment.
 *
 * Lifecycle, a union of states with guarded transitions:
 *
 *   created ──start()──▶ starting ──▶ running ──close()──▶ draining ──▶ closed
 *      │                    │            │                               ▲
 *      └──close()───────────┼────────────┼───────────────────────────────┘
 *                           └──▶ failed ◀┘ (start failed, or a consume loop died) ──close()──▶ closed
 *
 * `close()` is graceful: stop receiving, flush and run the open aggregates,
 * settle every task received, close consumers and producers. It is
 * idempotent, and a transport the worker was given stays open.
 */
import { WorkerMetrics } from '../telemetry/metrics.js';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { loadServices, setupFromConfigFile, type FromConfigOptions } from '../config/from-config.js';
import { ConfigError, LifecycleError, ShutdownTimeoutError } from '../errors.js';
import { within } from '../util/within.js';
import { resolveService } from '../service/registry.js';
import { DEAD_LETTER_SUBSCRIPTION, WORKER_SUBSCRIPTION, deadLetterTopic, taskTopic } from '../topics.js';
import type { Consumer } from '../transport/transport.js';
import type { WorkerEvents } from './events.js';
import { compileWorkerOptions, type CompiledWorkerOptions, type WorkerOptions } from './options.js';
import { OutcomePublisher } from './outcome-publisher.js';
import { ServiceRunner, type ServiceRunnerStats } from './service-runner.js';
import { SettledFeed } from './settled-feed.js';
import { StoppedJobs } from './stopped-jobs.js';
import { JobTracker, type JobTrackerPhase } from '../jobs/tracker.js';
import type { JobStatus } from '../wire/job-events.js';

export type WorkerState =
  | { readonly status: 'created' }
  | { readonly status: 'starting' }
  | { readonly status: 'running' }
  | { readonly status: 'draining' }
  | { readonly status: 'closed' }
  | { readonly status: 'failed'; readonly error: unknown };

type Status = WorkerState['status'];

const ALLOWED: Record<Status, readonly Status[]> = {
  created: ['starting', 'closed'],
  starting: ['running', 'failed'],
  running: ['draining', 'failed'],
  draining: ['closed'],
  failed: ['draining', 'closed'],
  closed: [],
};

export class SheafWorker {
  /** `batch` after every batch, `task` after every task settles, `failed` if the worker dies. */
  readonly events = new EventEmitter<WorkerEvents>();
  private readonly options: CompiledWorkerOptions;
  private readonly log: Logger;
  private current: WorkerState = { status: 'created' };
  private readonly runners = new Map<string, ServiceRunner>();
  private readonly publishers: OutcomePublisher[] = [];
  private readonly consumers: Consumer[] = [];
  private readonly settledFeeds: SettledFeed[] = [];
  /** Jobs stopped at their first failure, whose tasks are cancelled; null until started, or when statuses cannot be read. */
  private stoppedJobs: StoppedJobs | null = null;
  /** This worker's part in tracking jobs (docs/jobs.md); null when `jobs.tracker` is off or it could not start. */
  private tracker: JobTracker | null = null;
  private starting: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  private metrics: WorkerMetrics | null = null;
  /** Resources owned by the worker itself (a transport built from a config file). */
  private readonly owned: Array<() => Promise<void>> = [];

  /**
   * A worker for the services of a `sheaf.yml` (those with an executor). The
   * transport it builds is the worker's own: `close()` closes it too.
   */
  static async fromConfigFile(path: string, options: FromConfigOptions = {}): Promise<SheafWorker> {
    const setup = await setupFromConfigFile(path, options);
    try {
      const services = await loadServices(setup.loaded);
      if (services.length === 0) {
        throw new ConfigError(
          [{ path: 'services', message: 'no service has an executor: give at least one service an executor (module, export)' }],
          {
            source: setup.loaded.path,
          },
        );
      }
      const { shutdownGraceSeconds, errors, jobs } = setup.loaded.config;
      const worker = new SheafWorker({
        transport: setup.transport,
        services,
        logger: setup.logger,
        ...(shutdownGraceSeconds !== undefined ? { shutdownGraceSeconds } : {}),
        ...(errors ? { errors } : {}),
        ...(jobs ? { jobs } : {}),
        ...(setup.loaded.config.name ? { name: setup.loaded.config.name } : {}),
      });
      worker.own(setup.close);
      return worker;
    } catch (error) {
      await setup.close();
      throw error;
    }
  }

  /** Validates the options at once: a `ConfigError` lists every problem. */
  constructor(options: WorkerOptions) {
    this.options = compileWorkerOptions(options);
    this.log = this.options.logger.child({ worker: this.options.name });
  }

  get name(): string {
    return this.options.name;
  }

  /** Each service's `batch.maxMessages` (how full its batches can get). */
  batchLimits(): Record<string, { maxMessages: number }> {
    return Object.fromEntries(this.options.services.map((s) => [s.name, { maxMessages: s.batch.maxMessages }]));
  }

  /** Why the worker's transport cannot reach its broker now (see `Transport.connectionProblem`); null when it can. */
  get connectionProblem(): string | null {
    return this.options.transport.connectionProblem?.() ?? null;
  }

  /**
   * The jobs this worker's job tracker holds (running, or finished within
   * the retention), newest first, at most `limit`: none when its tracker is
   * off or another worker's is the active one. For the dashboard.
   */
  jobs(limit = 20): JobStatus[] {
    return this.tracker?.recentStatuses(limit) ?? [];
  }

  /**
   * This worker's job tracker: `standby` while another worker's is active,
   * `recovering` then `active` once it holds a term (with the term's epoch).
   * Null when `jobs.tracker` is off or the tracker could not start.
   */
  jobTracker(): { phase: JobTrackerPhase; epoch: number | null } | null {
    if (!this.tracker) return null;
    return { phase: this.tracker.phase, epoch: this.tracker.epoch ?? null };
  }

  /** The kind of transport the worker runs on (`inMemory`, `pulsar`, ...). */
  get transportKind(): string {
    return this.options.transport.kind;
  }

  get state(): WorkerState {
    return this.current;
  }

  /** Per-service figures: tasks in flight, open aggregates, running executions. */
  stats(): Record<string, ServiceRunnerStats> {
    return Object.fromEntries([...this.runners].map(([name, runner]) => [name, runner.stats]));
  }

  /** @internal Registers cleanup for something the worker created itself. */
  own(cleanup: () => Promise<void>): void {
    this.owned.push(cleanup);
  }

  /** Resolves the services, subscribes, and starts consuming. */
  start(): Promise<void> {
    if (this.current.status !== 'created') {
      return Promise.reject(new LifecycleError(`start() needs a new worker; this one is ${this.current.status}`));
    }
    this.transition({ status: 'starting' });
    this.starting = this.startServices().then(
      () => {
        this.transition({ status: 'running' });
        this.log.info({ services: this.options.services.map((s) => s.name), transport: this.options.transport.kind }, 'worker ready');
      },
      async (error: unknown) => {
        this.transition({ status: 'failed', error });
        await this.release();
        throw error;
      },
    );
    return this.starting;
  }

  /** Graceful stop: drains everything received, then closes. Safe to call more than once. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    if (this.current.status === 'created') {
      this.transition({ status: 'closed' });
      await this.runOwnedCleanup();
      return;
    }
    if (this.current.status === 'starting') await this.starting?.catch(() => undefined);
    if (this.current.status === 'running' || this.current.status === 'failed') {
      this.transition({ status: 'draining' });
      this.log.info('draining: no new tasks are received; open batches run and settle');
      const draining = Promise.all([...this.runners.values()].map((r) => r.drain()));
      if (!(await within(draining, this.options.shutdownGraceMs))) {
        // Out of time (a hung batch, a broker that is gone): stop waiting. What is unsettled goes back to the
        // broker when the consumers close; closing producers and the transport gets one more second.
        const unsettled = Object.fromEntries([...this.runners].map(([name, runner]) => [name, runner.stats.inFlight]));
        const error = new ShutdownTimeoutError(this.options.shutdownGraceMs / 1000, unsettled);
        this.log.error({ unsettled }, error.message);
        await within(
          this.release().then(() => this.runOwnedCleanup()),
          1000,
        );
        this.transition({ status: 'closed' });
        throw error;
      }
      await draining; // a drain that failed in time fails the close
    }
    await this.release();
    this.transition({ status: 'closed' });
    this.log.info('worker closed');
    await this.runOwnedCleanup();
  }

  private async startServices(): Promise<void> {
    const { transport, services, logger, clock, random, name } = this.options;
    // Made at start, not at construction: an SDK registered in between is the one used.
    this.metrics = new WorkerMetrics(this);
    // Before the consumers: a status that stops a job should reach this worker before its tasks do.
    this.stoppedJobs = await StoppedJobs.open(transport, this.log);
    for (const service of services) {
      const instance = await service.factory();
      if (instance === null || typeof instance !== 'object') {
        throw new LifecycleError(
          `services '${service.name}': executor.factory returned ${instance === null ? 'null' : typeof instance}, not a service instance`,
        );
      }
      const definition = resolveService(service.name, instance);
      // Dead letters are kept until someone inspects or replays them.
      await transport.ensureSubscription(deadLetterTopic(service.name), DEAD_LETTER_SUBSCRIPTION);
      const publisher = await OutcomePublisher.open(transport, service.name, logger);
      this.publishers.push(publisher);
      const consumer = await transport.subscribe({
        topic: taskTopic(service.name),
        subscription: WORKER_SUBSCRIPTION,
        maxUnacked: service.maxUnacked,
      });
      this.consumers.push(consumer);
      const settledFeed = service.settledCache.shared ? await SettledFeed.open(transport, service.name, this.log) : null;
      if (settledFeed) this.settledFeeds.push(settledFeed);
      const runner = new ServiceRunner({
        settledFeed,
        stoppedJobs: this.stoppedJobs,
        service,
        definition,
        instance,
        consumer,
        publisher,
        workerName: name,
        clock,
        random,
        logger: this.log,
        events: this.events,
        metrics: this.metrics,
        transportKind: transport.kind,
        errorInfo: this.options.errors,
        onFatal: (error) => this.fail(error),
      });
      this.runners.set(service.name, runner);
    }
    for (const runner of this.runners.values()) runner.start();
    if (this.options.jobs.tracker) await this.startJobTracker();
  }

  /** Starts the job tracker; a worker refused its topics (a role without them) runs without it, and says so once. */
  private async startJobTracker(): Promise<void> {
    const tracker = new JobTracker({
      transport: this.options.transport,
      logger: this.log,
      clock: this.options.clock,
      retentionMs: this.options.jobs.retentionMs,
    });
    try {
      await tracker.start();
      this.tracker = tracker;
    } catch (error) {
      await tracker.close().catch(() => undefined);
      this.log.warn({ err: error }, 'the job tracker could not start; this worker tracks no jobs (jobs.tracker: false silences this)');
    }
  }

  private fail(error: unknown): void {
    if (this.current.status !== 'running') return;
    this.transition({ status: 'failed', error });
    this.events.emit('failed', error);
  }

  private async release(): Promise<void> {
    this.metrics?.close();
    await this.tracker?.close();
    await Promise.all(this.consumers.map((c) => c.close().catch(() => undefined)));
    await Promise.all(this.publishers.map((p) => p.close()));
    await Promise.all(this.settledFeeds.map((f) => f.close()));
    await this.stoppedJobs?.close();
  }

  private async runOwnedCleanup(): Promise<void> {
    for (const cleanup of this.owned.splice(0).reverse()) await cleanup();
  }

  private transition(next: WorkerState): void {
    if (!ALLOWED[this.current.status].includes(next.status)) {
      throw new LifecycleError(`worker cannot go from ${this.current.status} to ${next.status}`);
    }
    this.current = next;
  }
}
