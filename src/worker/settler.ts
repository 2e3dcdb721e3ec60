/**
 * Settles executed tasks: makes each outcome durable, then acks the messages.
 *
 *   succeeded → its result, to the client's topic (when the client wants one)
 *   failed, retry left → the next attempt, back to the task topic with its delay
 *   failed for good → a dead letter (one per task attempt, whichever worker
 *     writes it: `OutcomePublisher.publishDeadLetter`), then a failure result
 *
 *   failed as a whole, batch of several (isolation bisect|single) → each task
 *     back to the task topic in an isolation group, its retry budget untouched
 *
 * A task of a job whose outcome is final (succeeded, failed for good,
 * dead-lettered) is reported to the job's tracker (`tasksSettled` on the
 * job-events topic) after its outcome is durable and before it is acked: a
 * worker killed in between leaves it unacked, and the tracker counts its
 * second report as nothing (it counts task indexes).
 *
 * A batch is settled as a batch: retries and dead letters go out together,
 * the results for one client leave as one `resultBatch` message (when the
 * client reads those, else one message each), and every message whose
 * outcome is durable is acked with one `ackAll`. A task whose outcome could
 * not be made durable is nacked instead: the broker redelivers it, and the
 * client ignores a second result. Tasks that share a result message share its
 * fate, so a failed result batch hands back every task in it. (A copy of a
 * task the worker holds never reaches a batch: see `HeldAttempts`.)
 *
 * Isolation: when a batch of several tasks fails as a whole, none of its
 * tasks is to blame more than another, so none is retried with tasks it was
 * not with. Each goes back in an isolation group (a half of the batch when
 * bisecting, itself alone with `single`), after `retry.minimumSeconds`,
 * without counting a retry: only a task that fails alone has failed, and
 * follows its retry policy (alone) from then on. An innocent task runs at
 * most ⌈log2(batch size)⌉ extra times. The plans: `failure-plans.ts`; the
 * job reports: `job-reports.ts`.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { BadReplyToError, MessageTooLargeError } from '../errors.js';
import { isResultTopic } from '../topics.js';
import type { Consumer, ReceivedMessage } from '../transport/transport.js';
import type { Clock } from '../util/clock.js';
import { toErrorInfo, type ErrorInfo, type ErrorInfoOptions } from '../wire/error-info.js';
import { salvageTaskFields, type DeadLetterReason, type ResultEnvelope, type TaskEnvelope } from '../wire/envelopes.js';
import type { IsolationMode } from '../config/executor-schema.js';
import type { TaskSettlement } from './events.js';
import { callItemError, reportJobOutcomes, settledEvents } from './job-reports.js';
import type { OutcomePublisher } from './outcome-publisher.js';
import type { ExecutionOutcome, ReceivedTask } from './received-task.js';
import { planFailures, type FailurePlan } from './failure-plans.js';
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
  /** This execution failed alone after its batch was split: the task is a poison found by isolation. */
  readonly poison: boolean;
  /** For `retried` and `isolated`: the isolation group of the next attempt published, if it has one (see `SettledAttempts`). */
  readonly nextGroup?: string | undefined;
}

export interface SettlerDeps {
  readonly serviceName: string;
  readonly workerName: string;
  readonly publisher: OutcomePublisher;
  readonly consumer: Consumer;
  readonly retryPolicy: RetryPolicy;
  readonly isolation: IsolationMode;
  /** How errors are written (`includeStack`). */
  readonly errorInfo: ErrorInfoOptions;
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
  poison: boolean;
  /** Why it failed for good: for its job's item-error callback. */
  error: ErrorInfo | null;
  /**
   * Failed for good, but the dead letter of this attempt was there already:
   * a copy of the same attempt ran on another worker at the same time, and
   * that worker wrote it. Settled as a `twin`; the result and the job report
   * still go (both count a task once), in case that worker died before
   * sending them.
   */
  letterExisted: boolean;
  /** The isolation group of the next attempt published (retried or isolated), if it has one. */
  nextGroup?: string;
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

  /**
   * Settles the tasks of one execution (`outcomes[i]` is `tasks[i]`'s);
   * resolves with each task's settlement. `failedAsWhole`: the batch failed
   * as a whole (see `BatchExecution.failedAsWhole`), which isolation acts on.
   */
  async settle(tasks: readonly ReceivedTask[], outcomes: readonly ExecutionOutcome[], failedAsWhole = false): Promise<TaskSettlement[]> {
    const pending: Pending[] = [];
    const failed: Array<{ entry: Pending; error: unknown }> = [];
    tasks.forEach((task, i) => {
      const entry: Pending = { task, settlement: 'succeeded', reason: null, reply: null, poison: false, error: null, letterExisted: false };
      pending.push(entry);
      const outcome = outcomes[i]!;
      // Successes need nothing durable but their result: no promise of their own (the hot path).
      if (outcome.ok) entry.reply = this.successResult(task.envelope, outcome.value);
      else failed.push({ entry, error: outcome.error });
    });
    const plans = planFailures(
      this.deps.isolation,
      failed.map((f) => f.entry.task.envelope),
      failedAsWhole,
      tasks.length,
    );
    if (failed.length > 0) await Promise.all(failed.map(({ entry, error }, i) => this.recordFailure(entry, error, plans[i]!)));
    await this.publishReplies(pending);
    await this.reportToJobs(pending);
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
      const settlement = entry.letterExisted && entry.settlement === 'failed' ? 'twin' : entry.settlement;
      this.deps.onSettled({
        taskId: e.taskId,
        method: e.method,
        batchKey: entry.task.batchKey,
        settlement,
        reason: entry.reason,
        attempts: e.retryIndex + 1,
        envelope: e,
        poison: entry.poison,
        nextGroup: entry.nextGroup,
      });
      return settlement;
    });
  }

  /** A task that can never run: dead-lettered with the reason, its client told, never retried. */
  async deadLetterNeverRunnable(
    message: ReceivedMessage,
    envelope: TaskEnvelope | null,
    reason: DeadLetterReason,
    cause: unknown,
  ): Promise<void> {
    const error = toErrorInfo(cause, this.deps.errorInfo);
    this.deps.log.warn(
      { reason, taskId: envelope?.taskId, messageId: message.id, error: error.message },
      'task can never run; dead-lettering it',
    );
    const salvaged = envelope ?? salvageTaskFields(message.payload);
    let settlement: TaskSettlement = 'failed';
    try {
      // A copy of the same message another worker dead-lettered already: a twin (the rest below counts once).
      if (
        (await this.publishDeadLetter({
          reason,
          detail: error.message,
          error,
          attempts: 0,
          task: envelope,
          // Unreadable bytes are kept, so nothing is lost.
          payloadBase64: envelope ? null : Buffer.from(message.payload).toString('base64'),
        })) === 'existed'
      )
        settlement = 'twin';
      const reply = this.failureResult(salvaged, reason, error, 0);
      // Only to a client's result topic: a replyTo that is not one chooses no topic (see isResultTopic).
      if (reply && salvaged.replyTo && isResultTopic(salvaged.replyTo)) await this.deps.publisher.publishResult(salvaged.replyTo, reply);
      // Its job must count it too, or the job never finishes; and hear of it, when it asked to.
      if (envelope) await callItemError(this.deps.publisher, envelope, reason, error, this.deps.clock.now());
      if (salvaged.job) {
        await this.deps.publisher.publishJobEvents(
          settledEvents(salvaged.job.id, [[salvaged.job.index, 'deadLettered']], this.deps.clock.now()),
        );
      }
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
      poison: false,
    });
  }

  /**
   * Tasks given back to the broker unrun (their key's slots were all busy
   * and other keys waited): each comes again after its delay. Not a retry:
   * nothing about the task changes.
   */
  defer(tasks: readonly ReceivedTask[], delayMs: (task: ReceivedTask) => number): void {
    for (const task of tasks) {
      this.deps.consumer.nack(task.message, delayMs(task));
      // With its envelope: the runner releases the attempt it held (and its copies), but remembers nothing settled.
      this.reportUnrun(task.envelope, 'deferred', true);
    }
  }

  /**
   * A copy that waited beside its original (see `HeldAttempts`): acked as a
   * twin when the original's outcome is durable, handed back with it otherwise.
   */
  async settleCopy(message: ReceivedMessage, envelope: TaskEnvelope, durable: boolean): Promise<void> {
    if (durable) return this.dropTwin(message, envelope);
    this.giveBack(message, envelope);
  }

  /** Hands a task message back unrun, as it is (a copy whose original was handed back, a stale delivery). */
  giveBack(message: ReceivedMessage, envelope: TaskEnvelope): void {
    this.deps.consumer.nack(message);
    this.reportUnrun(envelope, 'redelivered', false);
  }

  /** A second copy of an attempt settled here already: its outcome is durable, so it is acked without running. */
  async dropTwin(message: ReceivedMessage, envelope: TaskEnvelope): Promise<void> {
    let settlement: TaskSettlement = 'twin';
    try {
      await this.deps.consumer.ack(message);
    } catch (error) {
      settlement = this.handBack(message, error);
    }
    this.reportUnrun(envelope, settlement, false);
  }

  /**
   * A task of a job that stopped at its first failure: acked without
   * running, and a client that waits for it told (reason `jobStopped`). Not
   * reported to the job: it is finished already, and counts the task as
   * cancelled.
   */
  async cancel(message: ReceivedMessage, envelope: TaskEnvelope): Promise<void> {
    let settlement: TaskSettlement = 'cancelled';
    try {
      if (envelope.replyTo) {
        const error: ErrorInfo = {
          name: 'JobStoppedError',
          message: `job ${envelope.job!.id} stopped at its first failed task (continueOnError: false); this task was cancelled, not run`,
        };
        const reply: ResultEnvelope = {
          v: 1,
          kind: 'result',
          taskId: envelope.taskId,
          service: envelope.service,
          method: envelope.method,
          outcome: 'failed',
          reason: 'jobStopped',
          error,
          attempts: 0,
        };
        await this.deps.publisher.publishResult(envelope.replyTo, reply);
      }
      await this.deps.consumer.ack(message);
    } catch (error) {
      settlement = this.handBack(message, error);
    }
    this.reportUnrun(envelope, settlement, false);
  }

  /** Reports a task message settled without running (a twin, a copy, a deferral); `withEnvelope` as `SettledTask.envelope`. */
  private reportUnrun(envelope: TaskEnvelope, settlement: TaskSettlement, withEnvelope: boolean): void {
    this.deps.onSettled({
      taskId: envelope.taskId,
      method: envelope.method,
      batchKey: envelope.meta.batchKey ?? null,
      settlement,
      reason: null,
      attempts: envelope.retryIndex + 1,
      envelope: withEnvelope ? envelope : null,
      poison: false,
    });
  }

  /** A failed execution: its isolation retry, its retry, or its dead letter (and then a failure result to send). */
  private async recordFailure(entry: Pending, cause: unknown, plan: FailurePlan): Promise<void> {
    const e = entry.task.envelope;
    const attempts = e.retryIndex + 1;
    const error = toErrorInfo(cause, this.deps.errorInfo);
    try {
      if (plan.kind === 'isolate') {
        // Not a retry: the same attempt again, apart from tasks it was not with (its budget stays).
        await this.deps.publisher.publishRetry(
          { ...e, lastError: error, isolation: plan.isolation },
          this.deps.clock.now() + this.deps.retryPolicy.delayMs(0),
        );
        entry.settlement = 'isolated';
        entry.nextGroup = plan.isolation.group;
        return;
      }
      // Failed alone after a split: this is the task that fails its batches.
      entry.poison = plan.alone && (e.isolation?.step ?? 0) > 0;
      const decision = this.deps.retryPolicy.decide(cause, e.retryIndex);
      if (decision.retry) {
        const { isolation: _previous, ...rest } = e;
        const next: TaskEnvelope = { ...rest, retryIndex: e.retryIndex + 1, lastError: error };
        // A task that failed alone keeps a group of its own: it would fail the batches it joined.
        if (plan.alone) next.isolation = { group: randomUUID(), size: 1, step: 0 };
        await this.deps.publisher.publishRetry(next, this.deps.clock.now() + decision.delayMs);
        entry.settlement = 'retried';
        if (next.isolation) entry.nextGroup = next.isolation.group;
        return;
      }
      entry.reason = decision.reason;
      const letter = await this.publishDeadLetter({
        reason: decision.reason,
        detail: decision.reason === 'nonRetryable' ? `${error.name} is not retried` : `failed ${attempts} times; retries exhausted`,
        error,
        attempts,
        task: e,
        payloadBase64: null,
      });
      entry.settlement = 'failed';
      entry.letterExisted = letter === 'existed';
      entry.error = error;
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
              if (error instanceof BadReplyToError) return this.noResult(error);
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
        const info = toErrorInfo(error, this.deps.errorInfo);
        entry.reason = 'resultTooLarge';
        entry.settlement = 'failed';
        entry.error = info;
        entry.letterExisted =
          (await this.publishDeadLetter({
            reason: 'resultTooLarge',
            detail: `the result (${error.size} bytes) is over the broker's limit of ${error.limit} bytes; return less, or store it elsewhere and return a reference`,
            error: info,
            attempts,
            task: e,
            payloadBase64: null,
          })) === 'existed';
        await this.deps.publisher.publishResult(e.replyTo!, this.failureResult(e, 'resultTooLarge', info, attempts)!);
      }
    } catch (error) {
      if (error instanceof BadReplyToError) this.noResult(error);
      else entry.settlement = this.handBack(entry.task.message, error);
    }
  }

  /** A result with nowhere it may go: the outcome stays durable (retry, dead letter), no result is sent. */
  private noResult(error: BadReplyToError): void {
    this.deps.log.warn({ err: error }, 'result not sent: its replyTo is not a client result topic');
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
  }): Promise<'written' | 'existed'> {
    return this.deps.publisher.publishDeadLetter({
      v: 1,
      kind: 'deadLetter',
      ...d,
      worker: this.deps.workerName,
      deadAt: this.deps.clock.now(),
    });
  }

  /**
   * Reports the final outcomes among `pending` to their jobs. A report that
   * fails hands its task back like any outcome that could not be made
   * durable: it runs again, and its job counts it once.
   */
  private async reportToJobs(pending: readonly Pending[]): Promise<void> {
    let reports: Pending[] | undefined;
    for (const entry of pending) {
      if (entry.task.envelope.job && (entry.settlement === 'succeeded' || entry.settlement === 'failed')) (reports ??= []).push(entry);
    }
    if (!reports) return;
    try {
      await reportJobOutcomes(
        this.deps.publisher,
        reports.map((entry) => ({
          envelope: entry.task.envelope,
          failed: entry.settlement === 'failed',
          reason: entry.reason,
          error: entry.error,
        })),
        this.deps.clock.now(),
      );
    } catch (error) {
      for (const entry of reports) entry.settlement = this.handBack(entry.task.message, error);
    }
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
