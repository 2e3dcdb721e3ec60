/**
 * Settles executed tasks: makes each outcome durable, then acks the messages.
 *
 *   succeeded → its result, to the client's topic (when the client wants one)
 *   failed, retry left → the next attempt, back to the task topic with its delay
 *   failed for good → a dead letter, then a failure result to the client
 *
 * A batch is settled as a batch: retries and dead letters go out together,
 * the results for one client leave as one `resultBatch` message (when the
 * client reads those, else one message each), and every message whose
 * outcome is durable is acked with one `ackAll`. A task whose outcome could
 * not be made durable is nacked instead: the broker redelivers it, and the
 * client ignores a second result. Tasks that share a result message share its
 * fate, so a failed result batch hands back every task in it.
 */
import type { Logger } from 'pino';
import { MessageTooLargeError } from '../errors.js';
import type { Consumer, ReceivedMessage } from '../transport/transport.js';
import type { Clock } from '../util/clock.js';
import { toErrorInfo, type ErrorInfo } from '../wire/error-info.js';
import { salvageTaskFields, type DeadLetterReason, type ResultEnvelope, type TaskEnvelope } from '../wire/envelopes.js';
import type { TaskSettlement } from './events.js';
import type { OutcomePublisher } from './outcome-publisher.js';
import type { ExecutionOutcome, ReceivedTask } from './received-task.js';
import type { RetryPolicy } from './retry-policy.js';

/** One task settled: what the runner counts and reports. */
export interface SettledTask {
  readonly taskId: string;
  readonly method: string | null;
  readonly batchKey: string | null;
  readonly settlement: TaskSettlement;
  readonly reason: DeadLetterReason | null;
  readonly attempts: number;
  /** The task's envelope, when it could be read (its attempt is remembered to drop twins). */
  readonly envelope: TaskEnvelope | null;
}

export interface SettlerDeps {
  readonly serviceName: string;
  readonly workerName: string;
  readonly publisher: OutcomePublisher;
  readonly consumer: Consumer;
  readonly retryPolicy: RetryPolicy;
  readonly clock: Clock;
  readonly log: Logger;
  /** Called once per task message, after it was acked or handed back. */
  readonly onSettled: (task: SettledTask) => void;
}

/** Where a task stands between its execution and its ack. */
interface Pending {
  readonly task: ReceivedTask;
  settlement: TaskSettlement;
  reason: DeadLetterReason | null;
  /** The result still to publish, if the client wants one. */
  reply: ResultEnvelope | null;
}

/** Who to tell that a task can never run, as far as it could be read. */
interface ClientAddress {
  replyTo?: string | null;
  taskId?: string;
  service?: string;
  method?: string;
}

export class Settler {
  constructor(private readonly deps: SettlerDeps) {}

  /** Settles the tasks of one execution (`outcomes[i]` is `tasks[i]`'s); resolves with each task's settlement. */
  async settle(tasks: readonly ReceivedTask[], outcomes: readonly ExecutionOutcome[]): Promise<TaskSettlement[]> {
    const pending: Pending[] = [];
    const failures: Promise<void>[] = [];
    tasks.forEach((task, i) => {
      const entry: Pending = { task, settlement: 'succeeded', reason: null, reply: null };
      pending.push(entry);
      const outcome = outcomes[i]!;
      // Successes need nothing durable but their result: no promise of their own (the hot path).
      if (outcome.ok) entry.reply = this.successResult(task.envelope, outcome.value);
      else failures.push(this.recordFailure(entry, outcome.error));
    });
    if (failures.length > 0) await Promise.all(failures);
    await this.publishReplies(pending);
    const durable: ReceivedMessage[] = [];
    for (const entry of pending) if (entry.settlement !== 'redelivered') durable.push(entry.task.message);
    if (durable.length > 0) {
      try {
        await this.deps.consumer.ackAll(durable);
      } catch (error) {
        for (const entry of pending) if (entry.settlement !== 'redelivered') entry.settlement = this.handBack(entry.task.message, error);
      }
    }
    return pending.map((entry) => {
      const e = entry.task.envelope;
      this.deps.onSettled({
        taskId: e.taskId,
        method: e.method,
        batchKey: entry.task.batchKey,
        settlement: entry.settlement,
        reason: entry.reason,
        attempts: e.retryIndex + 1,
        envelope: e,
      });
      return entry.settlement;
    });
  }

  /** A task that can never run: dead-lettered with the reason, its client told, never retried. */
  async deadLetterNeverRunnable(
    message: ReceivedMessage,
    envelope: TaskEnvelope | null,
    reason: DeadLetterReason,
    cause: unknown,
  ): Promise<void> {
    const error = toErrorInfo(cause);
    this.deps.log.warn(
      { reason, taskId: envelope?.taskId, messageId: message.id, error: error.message },
      'task can never run; dead-lettering it',
    );
    const salvaged = envelope ?? salvageTaskFields(message.payload);
    let settlement: TaskSettlement = 'failed';
    try {
      await this.publishDeadLetter({
        reason,
        detail: error.message,
        error,
        attempts: 0,
        task: envelope,
        // Unreadable bytes are kept, so nothing is lost.
        payloadBase64: envelope ? null : Buffer.from(message.payload).toString('base64'),
      });
      const reply = this.failureResult(salvaged, reason, error, 0);
      if (reply && salvaged.replyTo) await this.deps.publisher.publishResult(salvaged.replyTo, reply);
      await this.deps.consumer.ack(message);
    } catch (publishError) {
      settlement = this.handBack(message, publishError);
    }
    this.deps.onSettled({
      taskId: salvaged.taskId ?? `message:${message.id}`,
      method: salvaged.method ?? null,
      batchKey: envelope?.meta.batchKey ?? null,
      settlement,
      reason,
      attempts: 0,
      envelope: null,
    });
  }

  /** A second copy of an attempt settled here already: its outcome is durable, so it is acked without running. */
  async dropTwin(message: ReceivedMessage, envelope: TaskEnvelope): Promise<void> {
    let settlement: TaskSettlement = 'twin';
    try {
      await this.deps.consumer.ack(message);
    } catch (error) {
      settlement = this.handBack(message, error);
    }
    this.deps.onSettled({
      taskId: envelope.taskId,
      method: envelope.method,
      batchKey: envelope.meta.batchKey ?? null,
      settlement,
      reason: null,
      attempts: envelope.retryIndex + 1,
      envelope: null,
    });
  }

  /** A failed execution: its retry, or its dead letter (and then a failure result to send). */
  private async recordFailure(entry: Pending, cause: unknown): Promise<void> {
    const e = entry.task.envelope;
    const attempts = e.retryIndex + 1;
    const error = toErrorInfo(cause);
    const decision = this.deps.retryPolicy.decide(cause, e.retryIndex);
    try {
      if (decision.retry) {
        await this.deps.publisher.publishRetry(
          { ...e, retryIndex: e.retryIndex + 1, lastError: error },
          this.deps.clock.now() + decision.delayMs,
        );
        entry.settlement = 'retried';
        return;
      }
      entry.reason = decision.reason;
      await this.publishDeadLetter({
        reason: decision.reason,
        detail: decision.reason === 'nonRetryable' ? `${error.name} is not retried` : `failed ${attempts} times; retries exhausted`,
        error,
        attempts,
        task: e,
        payloadBase64: null,
      });
      entry.settlement = 'failed';
      entry.reply = this.failureResult(e, decision.reason, error, attempts);
    } catch (publishError) {
      entry.settlement = this.handBack(entry.task.message, publishError);
    }
  }

  /** Publishes the results: one message per client that reads result batches, else one per result. */
  private async publishReplies(pending: readonly Pending[]): Promise<void> {
    const batches = new Map<string, Pending[]>();
    const singles: Pending[] = [];
    for (const entry of pending) {
      if (!entry.reply || entry.settlement === 'redelivered') continue;
      const e = entry.task.envelope;
      if (!e.resultBatches) {
        singles.push(entry);
        continue;
      }
      const group = batches.get(e.replyTo!);
      if (group) group.push(entry);
      else batches.set(e.replyTo!, [entry]);
    }
    const sends: Promise<void>[] = singles.map((entry) => this.publishSingle(entry));
    for (const [replyTo, group] of batches) {
      if (group.length === 1) {
        sends.push(this.publishSingle(group[0]!));
        continue;
      }
      sends.push(
        this.deps.publisher
          .publishResults(
            replyTo,
            group.map((entry) => entry.reply!),
          )
          .then(
            () => undefined,
            async (error: unknown) => {
              if (!(error instanceof MessageTooLargeError)) {
                for (const entry of group) entry.settlement = this.handBack(entry.task.message, error);
                return;
              }
              // Too big together: each alone, where a result too large by itself fails its task.
              await Promise.all(group.map((entry) => this.publishSingle(entry)));
            },
          ),
      );
    }
    await Promise.all(sends);
  }

  /** One result in its own message; a success result over the broker's limit fails its task for good. */
  private async publishSingle(entry: Pending): Promise<void> {
    const e = entry.task.envelope;
    try {
      try {
        await this.deps.publisher.publishResult(e.replyTo!, entry.reply!);
      } catch (error) {
        if (!(error instanceof MessageTooLargeError) || entry.reply!.outcome !== 'succeeded') throw error;
        // Running it again would give the same result: the task fails for good, without a retry loop.
        const attempts = e.retryIndex + 1;
        const info = toErrorInfo(error);
        entry.reason = 'resultTooLarge';
        entry.settlement = 'failed';
        await this.publishDeadLetter({
          reason: 'resultTooLarge',
          detail: `the result (${error.size} bytes) is over the broker's limit of ${error.limit} bytes; return less, or store it elsewhere and return a reference`,
          error: info,
          attempts,
          task: e,
          payloadBase64: null,
        });
        await this.deps.publisher.publishResult(e.replyTo!, this.failureResult(e, 'resultTooLarge', info, attempts)!);
      }
    } catch (error) {
      entry.settlement = this.handBack(entry.task.message, error);
    }
  }

  private successResult(e: TaskEnvelope, value: unknown): ResultEnvelope | null {
    if (!e.replyTo) return null;
    return {
      v: 1,
      kind: 'result',
      taskId: e.taskId,
      service: e.service,
      method: e.method,
      outcome: 'succeeded',
      value,
      attempts: e.retryIndex + 1,
    };
  }

  /** The failure result for a client that waits for this task; null when none does. */
  private failureResult(client: ClientAddress, reason: DeadLetterReason, error: ErrorInfo, attempts: number): ResultEnvelope | null {
    if (!client.replyTo || !client.taskId) return null;
    return {
      v: 1,
      kind: 'result',
      taskId: client.taskId,
      service: client.service ?? this.deps.serviceName,
      method: client.method ?? '',
      outcome: 'failed',
      reason,
      error,
      attempts,
    };
  }

  private async publishDeadLetter(d: {
    reason: DeadLetterReason;
    detail: string;
    error: ErrorInfo;
    attempts: number;
    task: TaskEnvelope | null;
    payloadBase64: string | null;
  }): Promise<void> {
    await this.deps.publisher.publishDeadLetter({
      v: 1,
      kind: 'deadLetter',
      ...d,
      worker: this.deps.workerName,
      deadAt: this.deps.clock.now(),
    });
  }

  private handBack(message: ReceivedMessage, error: unknown): TaskSettlement {
    this.deps.log.error(
      { err: error, messageId: message.id },
      'could not make a task outcome durable; handing the message back for redelivery',
    );
    this.deps.consumer.nack(message);
    return 'redelivered';
  }
}
