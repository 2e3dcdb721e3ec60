/**
 * Everything one worker does for one service: the consume loop, the in-flight
 * bound, the batch buffer, the execution slots, and settling each task.
 *
 * A task's life here:
 *   received → decoded and checked → (buffered in an aggregate →) waiting for a
 *   slot → executed → outcome made durable (result, retry or dead letter) → acked
 *
 * The loop stops pulling while `maxUnacked` tasks are received and not yet
 * settled, so memory is bounded whatever the number of keys. A task whose
 * outcome cannot be made durable is nacked: the broker redelivers it.
 */
import type { EventEmitter } from 'node:events';
import type { Attributes } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { WorkerMetrics } from '../telemetry/metrics.js';
import { inBatchSpan, inTaskSpan, markFailed, messagingSystem } from '../telemetry/tracing.js';
import { isResultTopic, taskTopic } from '../topics.js';
import { BadReplyToError, DecodeError, UnknownMethodError, UnknownServiceError, WrongArgumentsError } from '../errors.js';
import type { ServiceDefinition } from '../service/registry.js';
import { isAbortError, type Consumer, type ReceivedMessage } from '../transport/transport.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import { deferred, type Deferred } from '../util/deferred.js';
import { decodeTask, type TaskEnvelope } from '../wire/envelopes.js';
import type { ErrorInfoOptions } from '../wire/error-info.js';
import { BatchBuffer, type FlushedBatch } from './batch-buffer.js';
import type { WorkerEvents, TaskSettlement } from './events.js';
import { Executor } from './executor.js';
import type { CompiledService } from './options.js';
import type { OutcomePublisher } from './outcome-publisher.js';
import type { ExecutionOutcome, ReceivedTask } from './received-task.js';
import { RetryPolicy } from './retry-policy.js';
import { HeldAttempts } from './held-attempts.js';
import { SettledAttempts } from './settled-attempts.js';
import type { SettledFeed } from './settled-feed.js';
import { Settler, type SettledTask } from './settler.js';
import { Slots } from './slots.js';
import type { StoppedJobLookup } from './stopped-jobs.js';
import { StuckKeys } from './stuck-keys.js';

export interface ServiceRunnerDeps {
  readonly service: CompiledService;
  readonly definition: ServiceDefinition;
  readonly instance: object;
  readonly consumer: Consumer;
  readonly publisher: OutcomePublisher;
  /** Settled attempts shared with the service's other workers; null when not shared (`settledCache.shared`). */
  readonly settledFeed: SettledFeed | null;
  /** Jobs stopped at their first failure (`continueOnError: false`): their tasks are cancelled, not run. */
  readonly stoppedJobs: StoppedJobLookup | null;
  readonly workerName: string;
  readonly clock: Clock;
  readonly random: () => number;
  readonly logger: Logger;
  readonly events: EventEmitter<WorkerEvents>;
  readonly metrics: WorkerMetrics;
  /** For span attributes (`messaging.system`). */
  readonly transportKind: string;
  /** How errors are written into dead letters, retries and failure results. */
  readonly errorInfo: ErrorInfoOptions;
  /** Called when the consume loop dies of something other than a stop. */
  readonly onFatal: (error: unknown) => void;
}

export interface ServiceRunnerStats {
  /** Received and not yet settled. */
  readonly inFlight: number;
  readonly openAggregates: number;
  readonly bufferedTasks: number;
  readonly runningExecutions: number;
  /** Attempts other workers of the service announced as settled, taken into this worker's `settledCache`. */
  readonly settledElsewhere: number;
}

export class ServiceRunner {
  private readonly name: string;
  private readonly topic: string;
  private readonly buffer: BatchBuffer<ReceivedTask>;
  private readonly slots: Slots;
  private readonly stuckKeys: StuckKeys;
  private readonly executor: Executor;
  private readonly settler: Settler;
  private readonly settledAttempts: SettledAttempts;
  private readonly heldAttempts = new HeldAttempts();
  private readonly log: Logger;
  private readonly stop = new AbortController();
  private readonly tracked = new Set<Promise<void>>();
  private inFlight = 0;
  private settledElsewhere = 0;
  private warnedBackpressure = false;
  private room: Deferred<void> | null = null;
  private loop: Promise<void> | null = null;
  /** A later look at stuck keys while the worker cannot receive. */
  private deferCheck: TimerHandle | null = null;

  constructor(private readonly deps: ServiceRunnerDeps) {
    const { service, clock } = deps;
    this.name = service.name;
    this.topic = taskTopic(service.name);
    this.log = deps.logger.child({ service: service.name });
    this.buffer = new BatchBuffer(service.batch, (batch) => this.track(this.counted(this.executeBatch(batch))), clock);
    this.slots = new Slots(service.concurrency, service.maxConcurrencyPerKey);
    this.stuckKeys = new StuckKeys(this.slots, clock, service.batch.maxSeconds * 1000);
    this.executor = new Executor(service.name, deps.instance, service.timeoutMs, clock);
    this.settledAttempts = new SettledAttempts(service.settledCache.maxTasks, service.settledCache.maxAgeMs, clock);
    this.settler = new Settler({
      serviceName: service.name,
      workerName: deps.workerName,
      publisher: deps.publisher,
      consumer: deps.consumer,
      retryPolicy: new RetryPolicy(service.retry, deps.random),
      isolation: service.isolation,
      errorInfo: deps.errorInfo,
      clock,
      log: this.log,
      onSettled: (task) => this.settled(task),
    });
  }

  get stats(): ServiceRunnerStats {
    return {
      inFlight: this.inFlight,
      openAggregates: this.buffer.openAggregates,
      bufferedTasks: this.buffer.bufferedItems,
      runningExecutions: this.slots.inUse,
      settledElsewhere: this.settledElsewhere,
    };
  }

  start(): void {
    this.deps.settledFeed?.start((attempt) => {
      this.settledElsewhere += 1;
      this.settledAttempts.addShared(attempt);
    });
    this.loop = this.consume().catch((error: unknown) => {
      this.log.error({ err: error }, 'the consume loop stopped on an error');
      this.deps.onFatal(error);
    });
  }

  /** Stops pulling, runs what was delivered and the open aggregates, settles everything, closes the consumer. */
  async drain(): Promise<void> {
    this.deps.consumer.pause();
    this.stop.abort();
    if (this.deferCheck) this.deps.clock.clearTimer(this.deferCheck);
    this.deferCheck = null;
    this.room?.resolve();
    await this.loop;
    await this.takeDelivered();
    this.buffer.close();
    while (this.tracked.size > 0) await Promise.all(this.tracked);
    await this.deps.consumer.close();
  }

  /**
   * While draining: runs what the broker already delivered as well. A batching
   * producer's entry is acked only once all of its messages are (without
   * batch-index acks), so leaving part of it would send back, whole, tasks
   * that already ran. Bounded: a paused consumer receives nothing new.
   */
  private async takeDelivered(): Promise<void> {
    const { consumer, service } = this.deps;
    for (;;) {
      if (this.inFlight >= service.maxUnacked) {
        await this.roomFreed();
        continue;
      }
      const messages = consumer.takeDelivered(service.maxUnacked - this.inFlight);
      if (messages.length === 0) return;
      this.acceptAll(messages);
    }
  }

  /** Resolves once a task settles below the in-flight bound (or the runner stops). */
  private async roomFreed(): Promise<void> {
    this.room = deferred<void>();
    this.relieveBackpressure();
    await this.room.promise;
    this.room = null;
  }

  /**
   * At the in-flight bound, room comes only when tasks settle. When execution
   * slots are idle and what is held waits in aggregates for the clock, the
   * fullest aggregates are flushed now (flush reason `backpressure`): waiting
   * would idle the worker until `maxSeconds`, however deep the backlog.
   */
  private relieveBackpressure(): void {
    this.deferStuckKeys();
    // Slots not running anything: batches waiting for a saturated key's slot do not use them.
    const idleSlots = this.deps.service.concurrency - this.slots.inUse;
    if (idleSlots <= 0 || this.buffer.bufferedItems === 0) return;
    const { maxUnacked, batch } = this.deps.service;
    const open = this.buffer.openAggregates;
    if (!this.warnedBackpressure && open * batch.maxMessages > maxUnacked) {
      this.warnedBackpressure = true;
      this.log.warn(
        { maxUnacked, maxMessages: batch.maxMessages, openAggregates: open },
        `maxUnacked (${maxUnacked}) cannot fill a batch of maxMessages (${batch.maxMessages}) for each of the ${open} batch keys ` +
          `open: batches are flushed early for back-pressure; raise maxUnacked to ${open * batch.maxMessages} or more to fill them`,
      );
    }
    // Only keys with a slot free: a batch of a key at its limit would only wait for it.
    this.buffer.flushFullest(idleSlots, (group) => this.slots.fits(group.batchKey));
  }

  /**
   * While the worker cannot receive (at `maxUnacked`): gives back the batches
   * waiting for keys that `StuckKeys.shouldDefer`, and looks again after `maxSeconds`
   * while such batches wait (a key becomes stuck only with time).
   */
  private deferStuckKeys(): void {
    if (!this.room || this.deferCheck) return;
    const waiting = this.slots.waitingKeys();
    let saturated = false;
    for (const key of waiting) if (this.slots.saturated(key)) saturated = true;
    if (!saturated) return;
    const stuck = [...waiting].filter((key) => this.stuckKeys.shouldDefer(key));
    if (stuck.length > 0) this.slots.withdraw((key) => stuck.includes(key));
    else {
      this.deferCheck = this.deps.clock.setTimer(this.deps.service.batch.maxSeconds * 1000, () => {
        this.deferCheck = null;
        this.deferStuckKeys();
      });
    }
  }

  /** Runs an execution; when it ends, a worker stopped at the in-flight bound looks for room again. */
  private async counted(execution: Promise<void>): Promise<void> {
    try {
      await execution;
    } finally {
      // The consume loop may have blocked while this execution still held its slot.
      if (this.room) this.relieveBackpressure();
    }
  }

  private acceptAll(messages: readonly ReceivedMessage[]): void {
    this.inFlight += messages.length;
    for (const message of messages) this.accept(message);
  }

  private async consume(): Promise<void> {
    const { consumer, service } = this.deps;
    const signal = this.stop.signal;
    while (!signal.aborted) {
      if (this.inFlight >= service.maxUnacked) {
        await this.roomFreed();
        continue;
      }
      let messages: ReceivedMessage[];
      try {
        // Everything already delivered, in one promise: per-message promises were a fixed cost per task.
        messages = await consumer.receiveMany(service.maxUnacked - this.inFlight, signal);
      } catch (error) {
        if (signal.aborted || isAbortError(error)) return; // stopping: the messages stay with the broker
        throw error;
      }
      this.acceptAll(messages);
    }
  }

  /** Decodes and checks one message, then buffers it or schedules it. */
  private accept(message: ReceivedMessage): void {
    if (message.undecodable !== undefined) {
      // The transport could not read the message itself (compression, encryption, corruption): its bytes are kept.
      const error = new DecodeError(`the transport could not decode the message: ${message.undecodable}`);
      this.track(this.settler.deadLetterNeverRunnable(message, null, 'undecodable', error));
      return;
    }
    let envelope: TaskEnvelope;
    try {
      envelope = decodeTask(message.payload);
    } catch (error) {
      this.track(this.settler.deadLetterNeverRunnable(message, null, 'undecodable', error));
      return;
    }
    if (envelope.service !== this.name) {
      const error = new UnknownServiceError(envelope.service, this.name);
      this.track(this.settler.deadLetterNeverRunnable(message, envelope, 'unknownService', error));
      return;
    }
    const method = this.deps.definition.methods.get(envelope.method);
    if (!method) {
      const error = new UnknownMethodError(this.name, envelope.method, [...this.deps.definition.methods.keys()]);
      this.track(this.settler.deadLetterNeverRunnable(message, envelope, 'unknownMethod', error));
      return;
    }
    if (envelope.replyTo !== null && !isResultTopic(envelope.replyTo)) {
      // A task may not choose where the worker publishes with its own credentials.
      const error = new BadReplyToError(envelope.replyTo.slice(0, 200));
      this.track(this.settler.deadLetterNeverRunnable(message, envelope, 'badReplyTo', error));
      return;
    }
    if (this.settledAttempts.settled(envelope)) {
      this.track(this.settler.dropTwin(message, envelope));
      return;
    }
    if (envelope.job && this.deps.stoppedJobs?.has(envelope.job.id)) {
      this.track(this.settler.cancel(message, envelope));
      return;
    }
    let args: unknown[];
    let input: unknown;
    try {
      args = method.prepareArgs(envelope.args);
      input = method.batch ? method.batch.buildInput(args) : undefined;
    } catch (cause) {
      const error =
        cause instanceof WrongArgumentsError
          ? cause
          : new WrongArgumentsError(
              `${this.name}.${method.name}: arguments could not be prepared: ${(cause as Error)?.message ?? String(cause)}`,
              { cause },
            );
      this.track(this.settler.deadLetterNeverRunnable(message, envelope, 'wrongArguments', error));
      return;
    }
    // A copy of an attempt this worker holds (a redelivery after a lost connection): settled with the original.
    if (!this.heldAttempts.hold(envelope, message)) return;
    const batchKey = envelope.meta.batchKey ?? null;
    this.stuckKeys.seen(batchKey);
    const task: ReceivedTask = {
      message,
      envelope,
      method,
      args,
      input,
      bytes: message.payload.byteLength,
      batchKey,
      receivedAt: this.deps.clock.now(),
    };
    this.deps.metrics.taskReceived(this.name, method.name);
    if (!method.batch) this.track(this.counted(this.executeSingle(task)));
    else if (envelope.isolation) {
      const { group, size } = envelope.isolation;
      this.buffer.add({ method: method.name, batchKey, isolation: { id: group, size } }, task);
    } else this.buffer.add({ method: method.name, batchKey }, task);
  }

  private async executeSingle(task: ReceivedTask): Promise<void> {
    if (this.stuckKeys.shouldDefer(task.batchKey) || !(await this.slots.acquire(task.batchKey))) {
      this.defer([task]);
      return;
    }
    if (this.stillToRun([task]).length === 0) {
      this.slots.release(task.batchKey);
      return;
    }
    this.stuckKeys.slotChanged(task.batchKey);
    let outcome: ExecutionOutcome;
    const started = this.deps.clock.now();
    const e = task.envelope;
    try {
      outcome = await inTaskSpan(
        () => ({
          ...this.spanAttributes(e.method),
          'messaging.message.id': e.taskId,
          'sheaf.task.retry_index': e.retryIndex,
          ...(task.batchKey !== null ? { 'sheaf.batch.key': task.batchKey } : {}),
        }),
        `process ${this.topic}`,
        e.trace,
        async (span) => {
          const result = await this.executor.runSingle(task);
          if (!result.ok) markFailed(span, result.error);
          return result;
        },
      );
    } finally {
      this.slots.release(task.batchKey);
      this.stuckKeys.slotChanged(task.batchKey);
    }
    this.deps.metrics.singleExecuted(this.name, e.method, this.deps.clock.now() - started);
    if (!outcome.ok) this.deps.metrics.executionFailed(this.name, e.method, 1);
    await this.settler.settle([task], [outcome]);
  }

  private spanAttributes(method: string): Attributes {
    return {
      'messaging.system': messagingSystem(this.deps.transportKind),
      'messaging.destination.name': this.topic,
      'messaging.operation.type': 'process',
      'sheaf.service': this.name,
      'sheaf.method': method,
    };
  }

  private async executeBatch(batch: FlushedBatch<ReceivedTask>): Promise<void> {
    const method = batch.items[0]!.method;
    const batchMethod = method.batch!.methodName;
    if (this.stuckKeys.shouldDefer(batch.group.batchKey) || !(await this.slots.acquire(batch.group.batchKey))) {
      this.defer(batch.items);
      return;
    }
    const items = this.stillToRun(batch.items);
    if (items.length === 0) {
      this.slots.release(batch.group.batchKey);
      return;
    }
    if (items.length < batch.items.length) batch = { ...batch, items, bytes: items.reduce((sum, task) => sum + task.bytes, 0) };
    this.stuckKeys.slotChanged(batch.group.batchKey);
    let execution;
    let failedCount = 0;
    const waitMs = batch.flushedAt - batch.openedAt;
    try {
      execution = await inBatchSpan(
        () => ({
          ...this.spanAttributes(method.name),
          'messaging.batch.message_count': batch.items.length,
          'sheaf.batch.flush_reason': batch.reason,
          'sheaf.batch.wait_ms': waitMs,
          'sheaf.batch.method': batchMethod,
          ...(batch.group.batchKey !== null ? { 'sheaf.batch.key': batch.group.batchKey } : {}),
        }),
        `process ${this.topic}`,
        () => batch.items.map((task) => task.envelope.trace),
        async (span) => {
          const result = await this.executor.runBatch(batch, batchMethod);
          // Counted once, while the span is open; the metrics below use the same count.
          let firstError: unknown;
          for (const outcome of result.outcomes.values()) {
            if (outcome.ok) continue;
            if (failedCount === 0) firstError = outcome.error;
            failedCount += 1;
          }
          if (failedCount > 0) {
            span.setAttribute('sheaf.batch.failed_count', failedCount);
            markFailed(span, firstError);
          }
          return result;
        },
      );
    } finally {
      this.slots.release(batch.group.batchKey);
      this.stuckKeys.slotChanged(batch.group.batchKey);
    }
    this.deps.metrics.executionFailed(this.name, method.name, failedCount);
    const taskWaitsMs = batch.items.map((task) => batch.flushedAt - task.receivedAt);
    this.deps.metrics.batchExecuted(
      this.name,
      method.name,
      batch.items.length,
      batch.bytes,
      batch.reason,
      execution.durationMs,
      taskWaitsMs,
    );
    const settlements = await this.settler.settle(
      batch.items,
      batch.items.map((task) => execution.outcomes.get(task.envelope.taskId)!),
      execution.failedAsWhole,
    );
    const count = (s: TaskSettlement): number => settlements.filter((x) => x === s).length;
    const report = {
      service: this.name,
      method: method.name,
      batchMethod,
      batchKey: batch.group.batchKey,
      batchId: execution.batchId,
      size: execution.outcomes.size,
      bytes: batch.bytes,
      flushReason: batch.reason,
      waitMs,
      taskWaitsMs,
      durationMs: execution.durationMs,
      succeeded: count('succeeded'),
      retried: count('retried'),
      failed: count('failed'),
      isolated: count('isolated'),
      isolation: execution.isolation,
      contractErrors: execution.contractErrors,
    };
    if (report.contractErrors.length > 0) {
      this.log.error(
        { batchId: report.batchId, method: batchMethod, contractErrors: report.contractErrors },
        'batch method broke its contract',
      );
    }
    this.log.info(
      {
        method: report.method,
        batchKey: report.batchKey,
        size: report.size,
        bytes: report.bytes,
        flushReason: report.flushReason,
        durationMs: report.durationMs,
        succeeded: report.succeeded,
        retried: report.retried,
        failed: report.failed,
        ...(report.isolated > 0 ? { isolated: report.isolated } : {}),
        ...(report.isolation ? { isolationStep: report.isolation.step } : {}),
      },
      'batch executed',
    );
    this.deps.events.emit('batch', report);
  }

  /**
   * The tasks still worth running once their slot is free, checked as late
   * as possible. Not an attempt settled meanwhile by another worker (its
   * announcement came while the task waited in its batch): acked as a twin.
   * Not a message the broker delivers again anyway (its connection is gone,
   * `Consumer.isStale`): run now, it would run twice, here and wherever its
   * copy goes. It is handed back, and a copy of it that already came back
   * here takes its place.
   */
  private stillToRun(tasks: readonly ReceivedTask[]): readonly ReceivedTask[] {
    let run: ReceivedTask[] | null = null;
    for (let i = 0; i < tasks.length; i++) {
      const task = tasks[i]!;
      const settled = this.settledAttempts.settled(task.envelope);
      if (!settled && !this.deps.consumer.isStale(task.message)) {
        run?.push(task);
        continue;
      }
      run ??= tasks.slice(0, i);
      const copies = this.heldAttempts.release(task.envelope);
      if (settled) {
        for (const message of [task.message, ...copies]) this.track(this.settler.dropTwin(message, task.envelope));
      } else {
        this.settler.giveBack(task.message, task.envelope);
        // Counted in flight when they came; the first is held (and run) now, the others wait beside it.
        for (const copy of copies) this.accept(copy);
      }
    }
    return run ?? tasks;
  }

  /** Gives tasks back unrun (see `StuckKeys.shouldDefer`); the delay doubles with each deferral, up to the timeout. */
  private defer(tasks: readonly ReceivedTask[]): void {
    const { timeoutMs } = this.deps.service;
    this.settler.defer(tasks, (task) => Math.min(Math.max(timeoutMs, 60_000), 1000 * 2 ** Math.min(task.message.redeliveryCount, 6)));
  }

  private settled(task: SettledTask): void {
    this.inFlight -= 1;
    if (this.room && this.inFlight < this.deps.service.maxUnacked) this.room.resolve();
    const durable = task.settlement !== 'redelivered' && task.settlement !== 'deferred';
    if (task.envelope !== null) {
      if (durable) {
        const e = task.envelope;
        this.settledAttempts.add(e, task.nextGroup);
        const failed = task.settlement === 'retried' || task.settlement === 'isolated' || task.settlement === 'failed';
        this.deps.settledFeed?.announce([e.taskId, e.retrySequence, e.retryIndex, e.isolation?.step ?? 0, task.nextGroup], failed);
      }
      for (const copy of this.heldAttempts.release(task.envelope)) {
        this.track(this.settler.settleCopy(copy, task.envelope, durable));
      }
    }
    this.deps.metrics.taskSettled(this.name, task.method, task.settlement, task.settlement === 'failed', task.poison);
    if (task.poison)
      this.log.warn(
        { taskId: task.taskId, method: task.method, batchKey: task.batchKey },
        'poison task found: it failed alone after its batch was split',
      );
    const { events } = this.deps;
    if (events.listenerCount('task') > 0) {
      const { taskId, method, batchKey, settlement, reason, attempts, poison } = task;
      events.emit('task', { taskId, service: this.name, method, batchKey, settlement, reason, attempts, poison });
    }
  }

  private track(work: Promise<void>): void {
    const tracked = work.then(
      () => {
        this.tracked.delete(tracked);
      },
      (error: unknown) => {
        this.tracked.delete(tracked);
        this.log.error({ err: error }, 'unexpected error while executing or settling tasks');
      },
    );
    this.tracked.add(tracked);
  }
}
