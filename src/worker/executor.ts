/**
 * Runs user code: one task through its task method, or one batch through its
 * `@Batch` method, inside its context scope and under `timeoutSeconds`. It
 * turns whatever the code did into one `ExecutionOutcome` per task id and
 * never throws; deciding what an outcome means (retry, dead letter) is the
 * settler's job.
 */
import { randomUUID } from 'node:crypto';
import { BatchContractError, MissingResultError, TaskTimeoutError } from '../errors.js';
import type { Clock } from '../util/clock.js';
import type { FlushedBatch } from './batch-buffer.js';
import { runInBatchScope, runInTaskScope, type BatchContext, type TaskContext } from './context.js';
import type { ExecutionOutcome, ReceivedTask } from './received-task.js';

export interface BatchExecution {
  readonly batchId: string;
  /** One outcome per distinct task id of the batch. */
  readonly outcomes: ReadonlyMap<string, ExecutionOutcome>;
  /** Contract breaches reported for the batch as a whole (unknown task ids in the result). */
  readonly contractErrors: readonly string[];
  /**
   * The batch failed as a whole (threw, timed out, or returned something
   * other than a Map): every task has the same error and none is to blame
   * more than another. Per-task `Error` entries and missing entries are not
   * that: the method named the tasks that failed.
   */
  readonly failedAsWhole: boolean;
  /** The isolation the batch ran under (`BatchContext.isolation`). */
  readonly isolation: BatchContext['isolation'];
  readonly durationMs: number;
}

export class Executor {
  constructor(
    private readonly serviceName: string,
    private readonly instance: object,
    private readonly timeoutMs: number,
    private readonly clock: Clock,
  ) {}

  async runSingle(task: ReceivedTask): Promise<ExecutionOutcome> {
    const controller = new AbortController();
    const context = this.taskContext(task, controller.signal);
    const fn = this.method(task.method.name);
    try {
      const value = await this.withTimeout(controller, () => runInTaskScope(context, () => fn.apply(this.instance, task.args)));
      return { ok: true, value: value === undefined ? null : value };
    } catch (error) {
      return { ok: false, error };
    }
  }

  async runBatch(batch: FlushedBatch<ReceivedTask>, batchMethod: string): Promise<BatchExecution> {
    const started = this.clock.now();
    const batchId = randomUUID();
    const controller = new AbortController();
    // A task id can appear twice in one aggregate (a redelivered copy next to
    // the original): it runs once, and every copy settles with that outcome.
    const inputs = new Map<string, unknown>();
    const contexts = new Map<string, TaskContext>();
    for (const task of batch.items) {
      const id = task.envelope.taskId;
      if (inputs.has(id)) continue;
      inputs.set(id, task.input);
      contexts.set(id, this.taskContext(task, controller.signal));
    }
    const isolation = isolationOf(batch);
    const context: BatchContext = {
      batchId,
      serviceName: this.serviceName,
      methodName: batch.group.method,
      batchKey: batch.group.batchKey,
      size: inputs.size,
      bytes: batch.bytes,
      flushReason: batch.reason,
      openedAt: batch.openedAt,
      flushedAt: batch.flushedAt,
      isolation,
      signal: controller.signal,
    };
    const fn = this.method(batchMethod);
    const label = `${this.serviceName}.${batchMethod}`;
    const outcomes = new Map<string, ExecutionOutcome>();
    const contractErrors: string[] = [];
    let returned: unknown;
    try {
      returned = await this.withTimeout(controller, () => runInBatchScope(context, contexts, () => fn.call(this.instance, inputs)));
    } catch (error) {
      for (const id of inputs.keys()) outcomes.set(id, { ok: false, error });
      return { batchId, outcomes, contractErrors, failedAsWhole: true, isolation, durationMs: this.clock.now() - started };
    }
    let failedAsWhole = false;
    if (returned === undefined || returned === null) {
      for (const id of inputs.keys()) outcomes.set(id, { ok: true, value: null });
    } else if (!(returned instanceof Map)) {
      const error = new BatchContractError(label, `must return a Map<taskId, result | Error> or nothing, returned ${describe(returned)}`);
      contractErrors.push(error.message);
      for (const id of inputs.keys()) outcomes.set(id, { ok: false, error });
      failedAsWhole = true;
    } else {
      for (const id of inputs.keys()) {
        if (!returned.has(id)) {
          outcomes.set(id, { ok: false, error: new MissingResultError(id, label) });
          continue;
        }
        const value: unknown = returned.get(id);
        outcomes.set(id, value instanceof Error ? { ok: false, error: value } : { ok: true, value: value === undefined ? null : value });
      }
      for (const key of returned.keys()) {
        if (!inputs.has(key as string))
          contractErrors.push(`returned an entry for ${JSON.stringify(key)}, which is not a task of batch ${batchId}`);
      }
    }
    return { batchId, outcomes, contractErrors, failedAsWhole, isolation, durationMs: this.clock.now() - started };
  }

  private method(name: string): (...args: unknown[]) => unknown {
    return (this.instance as Record<string, (...args: unknown[]) => unknown>)[name]!;
  }

  private taskContext(task: ReceivedTask, signal: AbortSignal): TaskContext {
    const e = task.envelope;
    return {
      taskId: e.taskId,
      serviceName: e.service,
      methodName: e.method,
      batchKey: task.batchKey,
      meta: e.meta,
      tags: e.tags,
      retryIndex: e.retryIndex,
      retrySequence: e.retrySequence,
      lastError: e.lastError,
      dispatchedAt: new Date(e.dispatchedAt),
      redeliveryCount: task.message.redeliveryCount,
      signal,
    };
  }

  /**
   * Races the user's code against the timeout. On timeout the signal aborts
   * and the execution counts as failed; code that ignores the signal keeps
   * running in the background, and whatever it later returns is dropped.
   */
  private async withTimeout(controller: AbortController, run: () => unknown): Promise<unknown> {
    const work = Promise.resolve().then(run);
    let timer: ReturnType<Clock['setTimer']> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = this.clock.setTimer(this.timeoutMs, () => {
        const error = new TaskTimeoutError(this.timeoutMs / 1000);
        controller.abort(error);
        reject(error);
      });
    });
    work.catch(() => undefined); // a late rejection after a timeout is not unhandled
    try {
      return await Promise.race([work, timeout]);
    } finally {
      this.clock.clearTimer(timer!);
    }
  }
}

/** The isolation a batch runs under: its tasks share one group (the buffer batches them by it), or it is ordinary. */
function isolationOf(batch: FlushedBatch<ReceivedTask>): BatchContext['isolation'] {
  const isolation = batch.items[0]!.envelope.isolation;
  return isolation ? { step: isolation.step, groupSize: isolation.size } : null;
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? `an object (${Object.getPrototypeOf(value)?.constructor?.name ?? 'null prototype'})` : typeof value;
}
