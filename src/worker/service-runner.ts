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
import { taskTopic } from '../topics.js';
import { DecodeError, MessageTooLargeError, UnknownMethodError, UnknownServiceError, WrongArgumentsError } from '../errors.js';
import type { ServiceDefinition } from '../service/registry.js';
import { isAbortError, type Consumer, type ReceivedMessage } from '../transport/transport.js';
import type { Clock } from '../util/clock.js';
import { deferred, type Deferred } from '../util/deferred.js';
import { toErrorInfo, type ErrorInfo } from '../wire/error-info.js';
import { decodeTask, salvageTaskFields, type DeadLetterReason, type TaskEnvelope } from '../wire/envelopes.js';
import { BatchBuffer, type FlushedBatch } from './batch-buffer.js';
import type { WorkerEvents, TaskSettlement } from './events.js';
import { Executor } from './executor.js';
import type { CompiledService } from './options.js';
import type { OutcomePublisher } from './outcome-publisher.js';
import type { ExecutionOutcome, ReceivedTask } from './received-task.js';
import { RetryPolicy } from './retry-policy.js';
import { Slots } from './slots.js';

export interface ServiceRunnerDeps {
  readonly service: CompiledService;
  readonly definition: ServiceDefinition;
  readonly instance: object;
  readonly consumer: Consumer;
  readonly publisher: OutcomePublisher;
  readonly workerName: string;
  readonly clock: Clock;
  readonly random: () => number;
  readonly logger: Logger;
  readonly events: EventEmitter<WorkerEvents>;
  readonly metrics: WorkerMetrics;
  /** For span attributes (`messaging.system`). */
  readonly transportKind: string;
  /** Called when the consume loop dies of something other than a stop. */
  readonly onFatal: (error: unknown) => void;
}

export interface ServiceRunnerStats {
  /** Received and not yet settled. */
  readonly inFlight: number;
  readonly openAggregates: number;
  readonly bufferedTasks: number;
  readonly runningExecutions: number;
}

export class ServiceRunner {
  private readonly name: string;
  private readonly topic: string;
  private readonly buffer: BatchBuffer<ReceivedTask>;
  private readonly slots: Slots;
  private readonly executor: Executor;
  private readonly retryPolicy: RetryPolicy;
  private readonly log: Logger;
  private readonly stop = new AbortController();
  private readonly tracked = new Set<Promise<void>>();
  private inFlight = 0;
  private room: Deferred<void> | null = null;
  private loop: Promise<void> | null = null;

  constructor(private readonly deps: ServiceRunnerDeps) {
    const { service, clock } = deps;
    this.name = service.name;
    this.topic = taskTopic(service.name);
    this.log = deps.logger.child({ service: service.name });
    this.buffer = new BatchBuffer(service.batch, (batch) => this.track(this.executeBatch(batch)), clock);
    this.slots = new Slots(service.concurrency);
    this.executor = new Executor(service.name, deps.instance, service.timeoutMs, clock);
    this.retryPolicy = new RetryPolicy(service.retry, deps.random);
  }

  get stats(): ServiceRunnerStats {
    return {
      inFlight: this.inFlight,
      openAggregates: this.buffer.openAggregates,
      bufferedTasks: this.buffer.bufferedItems,
      runningExecutions: this.slots.inUse,
    };
  }

  start(): void {
    this.loop = this.consume().catch((error: unknown) => {
      this.log.error({ err: error }, 'the consume loop stopped on an error');
      this.deps.onFatal(error);
    });
  }

  /** Stops pulling, flushes and runs the open aggregates, settles everything, closes the consumer. */
  async drain(): Promise<void> {
    this.stop.abort();
    this.room?.resolve();
    await this.loop;
    this.buffer.close();
    while (this.tracked.size > 0) await Promise.all(this.tracked);
    await this.deps.consumer.close();
  }

  private async consume(): Promise<void> {
    const { consumer, service } = this.deps;
    const signal = this.stop.signal;
    while (!signal.aborted) {
      if (this.inFlight >= service.maxUnacked) {
        this.room = deferred<void>();
        await this.room.promise;
        this.room = null;
        continue;
      }
      let message: ReceivedMessage;
      try {
        message = await consumer.receive(signal);
      } catch (error) {
        if (signal.aborted || isAbortError(error)) return; // stopping: the message stays with the broker
        throw error;
      }
      this.inFlight += 1;
      this.accept(message);
    }
  }

  /** Decodes and checks one message, then buffers it or schedules it. */
  private accept(message: ReceivedMessage): void {
    if (message.undecodable !== undefined) {
      // The transport could not read the message itself (compression, encryption, corruption): its bytes are kept.
      const error = new DecodeError(`the transport could not decode the message: ${message.undecodable}`);
      this.track(this.deadLetterNeverRunnable(message, null, 'undecodable', error));
      return;
    }
    let envelope: TaskEnvelope;
    try {
      envelope = decodeTask(message.payload);
    } catch (error) {
      this.track(this.deadLetterNeverRunnable(message, null, 'undecodable', error));
      return;
    }
    if (envelope.service !== this.name) {
      const error = new UnknownServiceError(envelope.service, this.name);
      this.track(this.deadLetterNeverRunnable(message, envelope, 'unknownService', error));
      return;
    }
    const method = this.deps.definition.methods.get(envelope.method);
    if (!method) {
      const error = new UnknownMethodError(this.name, envelope.method, [...this.deps.definition.methods.keys()]);
      this.track(this.deadLetterNeverRunnable(message, envelope, 'unknownMethod', error));
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
      this.track(this.deadLetterNeverRunnable(message, envelope, 'wrongArguments', error));
      return;
    }
    const batchKey = envelope.meta.batchKey ?? null;
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
    if (method.batch) this.buffer.add({ method: method.name, batchKey }, task);
    else this.track(this.executeSingle(task));
  }

  private async executeSingle(task: ReceivedTask): Promise<void> {
    await this.slots.acquire();
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
      this.slots.release();
    }
    this.deps.metrics.singleExecuted(this.name, e.method, this.deps.clock.now() - started);
    if (!outcome.ok) this.deps.metrics.executionFailed(this.name, e.method, 1);
    await this.settle(task, outcome);
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
    await this.slots.acquire();
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
      this.slots.release();
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
    const settlements = await Promise.all(batch.items.map((task) => this.settle(task, execution.outcomes.get(task.envelope.taskId)!)));
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
      },
      'batch executed',
    );
    this.deps.events.emit('batch', report);
  }

  /** Makes one task's outcome durable, then acks its message; nacks it when that fails. */
  private async settle(task: ReceivedTask, outcome: ExecutionOutcome): Promise<TaskSettlement> {
    const { publisher, consumer, clock } = this.deps;
    const e = task.envelope;
    const attempts = e.retryIndex + 1;
    let settlement: TaskSettlement;
    let reason: DeadLetterReason | null = null;
    try {
      if (outcome.ok) {
        settlement = 'succeeded';
        if (e.replyTo) {
          try {
            await publisher.publishResult(e.replyTo, {
              v: 1,
              kind: 'result',
              taskId: e.taskId,
              service: e.service,
              method: e.method,
              outcome: 'succeeded',
              value: outcome.value,
              attempts,
            });
          } catch (error) {
            if (!(error instanceof MessageTooLargeError)) throw error;
            // Running it again would give the same result: the task fails for good, without a retry loop.
            reason = 'resultTooLarge';
            await this.publishFailure({
              reason,
              detail: `the result (${error.size} bytes) is over the broker's limit of ${error.limit} bytes; return less, or store it elsewhere and return a reference`,
              error: toErrorInfo(error),
              attempts,
              task: e,
              payloadBase64: null,
              client: e,
            });
            settlement = 'failed';
          }
        }
      } else {
        const error = toErrorInfo(outcome.error);
        const decision = this.retryPolicy.decide(outcome.error, e.retryIndex);
        if (decision.retry) {
          await publisher.publishRetry({ ...e, retryIndex: e.retryIndex + 1, lastError: error }, clock.now() + decision.delayMs);
          settlement = 'retried';
        } else {
          reason = decision.reason;
          await this.publishFailure({
            reason,
            detail: reason === 'nonRetryable' ? `${error.name} is not retried` : `failed ${attempts} times; retries exhausted`,
            error,
            attempts,
            task: e,
            payloadBase64: null,
            client: e,
          });
          settlement = 'failed';
        }
      }
      await consumer.ack(task.message);
    } catch (error) {
      settlement = this.handBack(task.message, error);
    }
    this.settled(e.taskId, e.method, task.batchKey, settlement, reason, attempts);
    return settlement;
  }

  /** A task that can never run: dead-lettered with the reason, its client told, never retried. */
  private async deadLetterNeverRunnable(
    message: ReceivedMessage,
    envelope: TaskEnvelope | null,
    reason: DeadLetterReason,
    cause: unknown,
  ): Promise<void> {
    const error = toErrorInfo(cause);
    this.log.warn(
      { reason, taskId: envelope?.taskId, messageId: message.id, error: error.message },
      'task can never run; dead-lettering it',
    );
    const salvaged = envelope ?? salvageTaskFields(message.payload);
    let settlement: TaskSettlement = 'failed';
    try {
      await this.publishFailure({
        reason,
        detail: error.message,
        error,
        attempts: 0,
        task: envelope,
        // Unreadable bytes are kept, so nothing is lost.
        payloadBase64: envelope ? null : Buffer.from(message.payload).toString('base64'),
        client: salvaged,
      });
      await this.deps.consumer.ack(message);
    } catch (publishError) {
      settlement = this.handBack(message, publishError);
    }
    this.settled(
      salvaged.taskId ?? `message:${message.id}`,
      salvaged.method ?? null,
      envelope?.meta.batchKey ?? null,
      settlement,
      reason,
      0,
    );
  }

  /** A task that ends here: its dead letter, then (when the client is known) its failure result. */
  private async publishFailure(failure: {
    reason: DeadLetterReason;
    detail: string;
    error: ErrorInfo;
    attempts: number;
    task: TaskEnvelope | null;
    payloadBase64: string | null;
    client: { replyTo?: string | null; taskId?: string; service?: string; method?: string };
  }): Promise<void> {
    const { publisher, workerName, clock } = this.deps;
    const { reason, detail, error, attempts, task, payloadBase64, client } = failure;
    await publisher.publishDeadLetter({
      v: 1,
      kind: 'deadLetter',
      reason,
      detail,
      task,
      payloadBase64,
      error,
      attempts,
      worker: workerName,
      deadAt: clock.now(),
    });
    if (client.replyTo && client.taskId) {
      await publisher.publishResult(client.replyTo, {
        v: 1,
        kind: 'result',
        taskId: client.taskId,
        service: client.service ?? this.name,
        method: client.method ?? '',
        outcome: 'failed',
        reason,
        error,
        attempts,
      });
    }
  }

  private handBack(message: ReceivedMessage, error: unknown): TaskSettlement {
    this.log.error({ err: error, messageId: message.id }, 'could not make a task outcome durable; handing the message back for redelivery');
    this.deps.consumer.nack(message);
    return 'redelivered';
  }

  private settled(
    taskId: string,
    method: string | null,
    batchKey: string | null,
    settlement: TaskSettlement,
    reason: DeadLetterReason | null,
    attempts: number,
  ): void {
    this.inFlight -= 1;
    if (this.room && this.inFlight < this.deps.service.maxUnacked) this.room.resolve();
    this.deps.metrics.taskSettled(this.name, method, settlement, settlement === 'failed');
    const { events } = this.deps;
    if (events.listenerCount('task') > 0) {
      events.emit('task', { taskId, service: this.name, method, batchKey, settlement, reason, attempts });
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
