/**
 * SheafClient: dispatches tasks and receives their results.
 *
 * Each client has its own result topic (`sheaf-results-{name}`); workers
 * publish every outcome there. The client keeps a record of each task it
 * dispatched until its result arrives; a second result for a task it already
 * settled (a redelivered task executed twice) finds no record and is ignored.
 */
import { randomUUID } from 'node:crypto';
import { pino, type Logger } from 'pino';
import { setupFromConfigFile, type FromConfigOptions } from '../config/from-config.js';
import { toConfigIssues } from '../config/issues.js';
import { ConfigError, LifecycleError, SendTimeoutError } from '../errors.js';
import { CLIENT_SUBSCRIPTION, NAME_PATTERN, WORKER_SUBSCRIPTION, resultTopic, taskTopic } from '../topics.js';
import { endSpan, startSendSpan } from '../telemetry/tracing.js';
import { InMemoryTransport } from '../transport/memory/in-memory-transport.js';
import { KeptProducers } from '../transport/kept-producers.js';
import { DEDUPLICATED, isAbortError, type Consumer, type Producer, type ReceivedMessage, type Transport } from '../transport/transport.js';
import { Deadlines } from '../util/deadlines.js';
import { toPlain } from '../util/json.js';
import { decodeResults, encodeEnvelope, type ResultEnvelope, type TaskEnvelope } from '../wire/envelopes.js';
import type { JobCallbacks, JobStatus, TaskJobRef } from '../wire/job-events.js';
import { ClientJobs } from './client-jobs.js';
import type { Job, JobBinding, JobOptions } from './job.js';
import {
  clientOptionsSchema,
  parseDispatchOptions,
  plainDispatchOptions,
  stubOptionsSchema,
  type ClientOptions,
  type ServiceStubOptions,
} from './client-options.js';
import { FireAndForgetHandle, PendingTask, type DispatchOptions, type TaskHandle, type TaskHandles } from './task-handle.js';

export type { DispatchOptions, TaskHandles };
export type { ClientOptions, ServiceStubOptions };

interface StubTarget {
  readonly serviceName: string;
  readonly meta: Record<string, string>;
  readonly tags: string[];
  readonly fireAndForget?: boolean;
  /** The job its tasks join: gives each its reference (the next index) and tracks its send. */
  readonly job?: JobBinding;
}

export class SheafClient {
  readonly name: string;
  private readonly transport: Transport;
  private readonly log: Logger;
  private readonly resultTopic: string;
  private readonly pending = new Map<string, PendingTask>();
  /** Task producers by topic: the workers' subscription is made before the first task, or a broker may drop it. */
  private readonly producers: KeptProducers;
  private readonly stubs = new WeakMap<object, StubTarget>();
  private readonly stop = new AbortController();
  private consumer: Consumer | null = null;
  private loop: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  /** The client's jobs: created, resumed, attached (src/client/client-jobs.ts). */
  private readonly jobs: ClientJobs;
  /** Resources the client created itself (a transport built from a config file). */
  private readonly owned: Array<() => Promise<void>> = [];

  private readonly resultTimeoutMs: number | undefined;
  private keepResultsOnClose = true;
  private deadlineTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly noWorkerChecked = new Set<string>();
  private readonly sendTimeoutMs: number;
  /** Null when the transport bounds its sends and no client send timeout was asked for. */
  private readonly sendDeadlines: Deadlines | null;

  private constructor(
    transport: Transport,
    name: string,
    logger: Logger,
    timeouts: { resultSeconds: number; sendSeconds: number | undefined },
  ) {
    this.resultTimeoutMs = timeouts.resultSeconds > 0 ? timeouts.resultSeconds * 1000 : undefined;
    this.sendTimeoutMs = (timeouts.sendSeconds ?? 60) * 1000;
    this.sendDeadlines = timeouts.sendSeconds === undefined && transport.sendsBounded ? null : new Deadlines(this.sendTimeoutMs);
    this.transport = transport;
    this.producers = new KeptProducers(transport, { subscription: WORKER_SUBSCRIPTION });
    this.name = name;
    this.log = logger.child({ client: name });
    this.resultTopic = resultTopic(name);
    this.jobs = new ClientJobs(transport, name, this.log, (stub, options, binding) => this.dispatchWith(stub, options, binding));
  }

  /** Validates the options, subscribes to the client's result topic, and starts receiving results. */
  static async connect(options: ClientOptions): Promise<SheafClient> {
    const parsed = clientOptionsSchema.safeParse(options, { reportInput: true });
    if (!parsed.success) throw new ConfigError(toConfigIssues(parsed.error), { source: 'client options' });
    const o = parsed.data;
    const client = new SheafClient(o.transport, o.name ?? `client-${randomUUID()}`, o.logger ?? pino({ name: 'sheaf', level: 'info' }), {
      resultSeconds: o.defaultResultTimeoutSeconds ?? 3600,
      sendSeconds: o.sendTimeoutSeconds,
    });
    client.keepResultsOnClose = o.keepResultsOnClose ?? o.name !== undefined;
    client.consumer = await o.transport.subscribe({
      topic: client.resultTopic,
      subscription: CLIENT_SUBSCRIPTION,
      maxUnacked: o.maxUnackedResults ?? 1000,
    });
    client.loop = client.receiveResults(client.consumer, o.maxUnackedResults ?? 1000);
    return client;
  }

  /**
   * A client for the transport a `sheaf.yml` describes. Its name is the
   * file's `name:` plus a random suffix, so that processes sharing one file
   * never share a result topic; pass `name` to keep a stable one.
   */
  static async fromConfigFile(path: string, options: FromConfigOptions & { name?: string } = {}): Promise<SheafClient> {
    const setup = await setupFromConfigFile(path, options);
    try {
      const client = await SheafClient.connect({
        transport: setup.transport,
        logger: setup.logger,
        name: options.name ?? `${setup.loaded.config.name ?? 'client'}-${randomUUID().slice(0, 8)}`,
        keepResultsOnClose: options.name !== undefined,
      });
      client.own(setup.close);
      return client;
    } catch (error) {
      await setup.close();
      throw error;
    }
  }

  /** @internal Registers cleanup for something the client created itself. */
  own(cleanup: () => Promise<void>): void {
    this.owned.push(cleanup);
  }

  /** Tasks dispatched by this client whose result has not arrived yet. */
  get pendingTasks(): number {
    return this.pending.size;
  }

  /**
   * A typed stub for a service: calling a method dispatches a task and waits
   * for its result.
   */
  service<T extends object>(serviceName: string, options: ServiceStubOptions = {}): T {
    if (!NAME_PATTERN.test(serviceName)) {
      throw new ConfigError([
        { path: 'serviceName', message: `'${serviceName}' is not a service name: start with a letter; use letters, digits, "_" and "-"` },
      ]);
    }
    const parsed = stubOptionsSchema.safeParse(options, { reportInput: true });
    if (!parsed.success) throw new ConfigError(toConfigIssues(parsed.error), { source: `client.service('${serviceName}') options` });
    const target: StubTarget = { serviceName, meta: { ...(parsed.data.meta ?? {}) }, tags: [...(parsed.data.tags ?? [])] };
    const stub = this.proxy(target, (method, args) => this.dispatchTask(target, method, args).then((h) => h.result()));
    this.stubs.set(stub, target);
    return stub as T;
  }

  /**
   * The handle-returning view of a stub: `await client.dispatch(email).send(...)`
   * gives a `TaskHandle` once the task is sent. Dispatch many and await their
   * results together (`Promise.all`) rather than one after another. Options
   * set a batch key (or metadata, tags) for these calls only, or send them
   * fire-and-forget.
   */
  dispatch<T extends object>(stub: T, options: DispatchOptions = {}): TaskHandles<T> {
    return this.dispatchWith(stub, options);
  }

  /**
   * A new job (docs/jobs.md): `job.dispatch(stub).method(...)` joins tasks
   * to it, `job.seal()` says no more come, `job.status()` and `job.done()`
   * follow it. Needs a job tracker: a `sheaf worker` with `jobs.tracker` on.
   */
  job(options: JobOptions = {}): Promise<Job> {
    this.assertOpen('start a job');
    return this.jobs.create(options);
  }

  /**
   * Continues dispatching a resumable job whose dispatcher stopped (killed,
   * crashed, interrupted): the returned job's `addAll` skips the items the
   * broker's checkpoint holds as dispatched and sends the rest; a task sent
   * before the stop and sent again is dropped by the broker
   * (`job.deduplicated` counts them). Pass the same items in the same order.
   * `JobResumeError` when the broker holds no checkpoint of the job. Pass
   * the callbacks it was created with: the tasks dispatched from here on
   * carry its item-error callback from them.
   */
  resumeJob(jobId: string, options: { callbacks?: JobCallbacks } = {}): Promise<Job> {
    this.assertOpen('resume a job');
    return this.jobs.resume(jobId, options);
  }

  /**
   * Follows a job created elsewhere: `status()` and `done()` work;
   * dispatching and sealing stay with its creator. The first attach loads
   * the client's table of every job's status from the job tracker (waiting
   * for it up to 2 s), so `status()` of any attached job answers from
   * memory (docs/jobs.md).
   */
  attachJob(jobId: string): Promise<Job> {
    this.assertOpen('follow a job');
    return this.jobs.attach(jobId);
  }

  /**
   * The statuses of the jobs the job tracker holds (running, or finished
   * within `jobs.retentionHours`), the most recently started first: at most
   * `limit` (default 100, at most 1000). `JobWaitError` when no tracker
   * answers within `timeoutMs` (default 10 s).
   */
  listJobs(options: { limit?: number; timeoutMs?: number } = {}): Promise<JobStatus[]> {
    this.assertOpen('list jobs');
    return this.jobs.list(options);
  }

  private assertOpen(toDo: string): void {
    if (this.closing) throw new LifecycleError(`client ${this.name} is closed; connect a new one to ${toDo}`);
  }

  private dispatchWith<T extends object>(stub: T, options: DispatchOptions, job?: JobBinding): TaskHandles<T> {
    const base = this.stubs.get(stub);
    if (!base) throw new TypeError("client.dispatch() takes a stub made by this client's service() method");
    const o = plainDispatchOptions(options) ? options : parseDispatchOptions(options);
    const target: StubTarget = {
      serviceName: base.serviceName,
      meta: { ...base.meta, ...(o.meta ?? {}), ...(o.batchKey !== undefined ? { batchKey: o.batchKey } : {}) },
      tags: [...base.tags, ...(o.tags ?? [])],
      fireAndForget: o.fireAndForget ?? false,
      ...(job ? { job } : {}),
    };
    return this.proxy(target, (method, args) =>
      target.job ? target.job.dispatching((ref) => this.dispatchTask(target, method, args, ref)) : this.dispatchTask(target, method, args),
    ) as TaskHandles<T>;
  }

  /** Stops receiving results and closes what the client opened. Tasks still waiting reject. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.stop.abort();
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    this.sendDeadlines?.close();
    await this.loop;
    if (this.keepResultsOnClose) await this.consumer?.close();
    else {
      // A generated name is never used again: its subscription would only hold results for no one.
      await this.consumer?.unsubscribe().catch((error: unknown) => {
        this.log.warn({ err: error, topic: this.resultTopic }, 'could not delete the result subscription; it stays on the broker');
        return this.consumer?.close();
      });
    }
    await this.jobs.close();
    await this.producers.close();
    for (const task of this.pending.values()) {
      task.abandon(
        new LifecycleError(
          `client ${this.name} closed before the result of task ${task.id} arrived; it stays on topic ${this.resultTopic}`,
        ),
      );
    }
    this.pending.clear();
    for (const cleanup of this.owned.splice(0).reverse()) await cleanup();
  }

  private proxy(target: StubTarget, call: (method: string, args: unknown[]) => Promise<unknown>): object {
    return new Proxy(Object.create(null) as object, {
      get(_, property) {
        // `then` must stay undefined, or awaiting a stub would dispatch a task.
        if (typeof property !== 'string' || property === 'then') return undefined;
        return (...args: unknown[]) => call(property, args);
      },
      has: () => false,
      set: () => {
        throw new TypeError(`a stub of ${target.serviceName} is read-only`);
      },
    });
  }

  private async dispatchTask(target: StubTarget, method: string, args: unknown[], jobRef?: TaskJobRef): Promise<TaskHandle<unknown>> {
    if (this.closing) throw new LifecycleError(`client ${this.name} is closed; connect a new one to dispatch`);
    const envelope: TaskEnvelope = {
      v: 1,
      kind: 'task',
      taskId: randomUUID(),
      service: target.serviceName,
      method,
      args: args.map(toPlain),
      meta: target.meta,
      tags: target.tags,
      replyTo: target.fireAndForget ? null : this.resultTopic,
      retryIndex: 0,
      retrySequence: 0,
      lastError: null,
      dispatchedAt: Date.now(),
    };
    if (jobRef) envelope.job = jobRef;
    // This client reads result batches; fire-and-forget tasks get no result at all.
    if (!target.fireAndForget) envelope.resultBatches = true;
    const topic = taskTopic(target.serviceName);
    const { span, carrier } = startSendSpan({
      transport: this.transport.kind,
      topic,
      taskId: envelope.taskId,
      service: target.serviceName,
      method,
      batchKey: target.meta.batchKey,
    });
    if (carrier) envelope.trace = carrier;
    let payload: Uint8Array;
    try {
      payload = encodeEnvelope(envelope);
    } catch (cause) {
      const error = new TypeError(`${target.serviceName}.${method}: the arguments cannot be sent as JSON (${(cause as Error).message})`, {
        cause,
      });
      endSpan(span, error);
      throw error;
    }
    const message = { payload, key: target.meta.batchKey, properties: { 'sheaf-task-id': envelope.taskId } };
    const resumable = jobRef ? target.job?.resumable : undefined;
    const send = async (): Promise<string> => {
      let id: string;
      try {
        const sending = resumable
          ? resumable.send(topic, message, jobRef!.index)
          : this.producer(target.serviceName).then((producer) => producer.send(message));
        // A transport that bounds its own sends needs no second timer (it cost 7 % of the dispatch rate).
        id = await (this.sendDeadlines ? this.sendDeadlines.race(sending, () => new SendTimeoutError(topic, this.sendTimeoutMs)) : sending);
      } catch (error) {
        endSpan(span, error);
        throw error;
      }
      endSpan(span);
      return id;
    };
    this.warnIfNoInMemoryWorker(target.serviceName);
    if (target.fireAndForget) {
      await send();
      return new FireAndForgetHandle(envelope.taskId, target.serviceName, method);
    }
    const deadline = this.resultTimeoutMs === undefined ? Infinity : Date.now() + this.resultTimeoutMs;
    const task = new PendingTask(envelope.taskId, target.serviceName, method, deadline, this.forgetTask);
    this.pending.set(task.id, task); // before the send: the result may come back first
    this.armDeadlineTimer();
    let id: string;
    try {
      id = await send();
    } catch (error) {
      this.pending.delete(task.id);
      throw error;
    }
    if (id === DEDUPLICATED) {
      // Sent before the job resumed (this copy was dropped): its result went to the dispatcher that sent it first.
      this.pending.delete(task.id);
      task.abandon(
        new LifecycleError(
          `task ${jobRef?.index ?? ''} of job ${jobRef?.id ?? ''} was dispatched before the job resumed; its result went to the earlier dispatcher`,
        ),
      );
    }
    return task;
  }

  private readonly forgetTask = (task: PendingTask): void => {
    if (this.pending.get(task.id) === task) this.pending.delete(task.id);
  };

  /**
   * One timer for every default result wait: `pending` is in dispatch order,
   * and with one default timeout that is deadline order, so only its oldest
   * entries are ever due. (A timer per task cost a third of the client's
   * throughput and doubled its memory per task.)
   */
  private armDeadlineTimer(): void {
    if (this.deadlineTimer || this.resultTimeoutMs === undefined) return;
    const oldest = this.pending.values().next();
    if (oldest.done) return;
    const delay = Math.max(0, oldest.value.deadline - Date.now());
    this.deadlineTimer = setTimeout(() => {
      this.deadlineTimer = null;
      const now = Date.now();
      for (const task of this.pending.values()) {
        if (task.deadline > now) break;
        task.expire(this.resultTimeoutMs!);
      }
      this.armDeadlineTimer();
    }, delay);
  }

  /**
   * An in-memory transport reaches only this process: a task for a service no
   * worker here serves waits until one starts here. Say so once per service.
   */
  private warnIfNoInMemoryWorker(serviceName: string): void {
    // Checked until a worker is seen or the warning given, then never again for that service (every dispatch passes here).
    if (!(this.transport instanceof InMemoryTransport) || this.noWorkerChecked.has(serviceName)) return;
    if (this.transport.consumerCount(taskTopic(serviceName)) > 0) {
      this.noWorkerChecked.add(serviceName);
      return;
    }
    this.noWorkerChecked.add(serviceName);
    this.log.warn(
      { service: serviceName },
      `no worker in this process serves ${serviceName}, and the in-memory transport reaches no other process: ` +
        'its tasks wait until a worker starts here (use transport: pulsar to reach workers elsewhere)',
    );
  }

  private producer(serviceName: string): Promise<Producer> {
    return this.producers.get(taskTopic(serviceName));
  }

  private async receiveResults(consumer: Consumer, batchSize: number): Promise<void> {
    const signal = this.stop.signal;
    while (!signal.aborted) {
      let messages;
      try {
        messages = await consumer.receiveMany(batchSize, signal);
      } catch (error) {
        if (signal.aborted || isAbortError(error)) return;
        this.log.error({ err: error }, 'receiving results failed; results wait on the topic until the client reconnects');
        return;
      }
      for (const message of messages) this.settleFrom(message);
      await consumer
        .ackAll(messages)
        .catch((error: unknown) => this.log.warn({ err: error }, 'acking results failed; they may arrive again'));
    }
  }

  /** Settles the tasks one result message answers (a result, or a worker's batch of results). */
  private settleFrom(message: ReceivedMessage): void {
    let results: readonly ResultEnvelope[];
    try {
      results = decodeResults(message.payload);
    } catch (error) {
      this.log.error({ err: error, messageId: message.id }, 'a result message could not be read; dropping it');
      return;
    }
    for (const result of results) {
      const task = this.pending.get(result.taskId);
      if (task) {
        this.pending.delete(result.taskId);
        task.settle(result);
      } else {
        this.log.debug(
          { taskId: result.taskId },
          'ignoring a result for a task this client is not waiting for (already settled, or dispatched by an earlier client)',
        );
      }
    }
  }
}
