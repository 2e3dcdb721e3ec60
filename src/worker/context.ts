/**
 * The task context API. A single task runs inside a task scope, a batch inside
 * a batch scope; both are carried by AsyncLocalStorage, so they follow the
 * user's code through awaits without being passed around.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { TaskContextError } from '../errors.js';
import type { ErrorInfo } from '../wire/error-info.js';
import type { TaskMeta } from '../wire/envelopes.js';
import type { FlushReason } from './batch-buffer.js';

export interface TaskContext {
  readonly taskId: string;
  readonly serviceName: string;
  readonly methodName: string;
  /** `meta.batchKey`, or null when the task was dispatched without one. */
  readonly batchKey: string | null;
  readonly meta: Readonly<TaskMeta>;
  readonly tags: readonly string[];
  /** Automatic retries before this execution (0 on the first). */
  readonly retryIndex: number;
  /** Manual retries (dead-letter replays) before this execution. */
  readonly retrySequence: number;
  /** The error of the previous execution, when this is a retry. */
  readonly lastError: ErrorInfo | null;
  readonly dispatchedAt: Date;
  /** How many times the broker delivered this message before (crash recovery, not retries). */
  readonly redeliveryCount: number;
  /** Aborted when the execution passes `timeoutSeconds`: stop work that can be stopped. */
  readonly signal: AbortSignal;
}

export interface BatchContext {
  readonly batchId: string;
  readonly serviceName: string;
  readonly methodName: string;
  /** The batch key every task of the batch shares (null: dispatched without one). */
  readonly batchKey: string | null;
  readonly size: number;
  /** Sum of the tasks' message sizes. */
  readonly bytes: number;
  readonly flushReason: FlushReason;
  /** When the batch's first task entered its aggregate, and when the aggregate was flushed (epoch ms). */
  readonly openedAt: number;
  readonly flushedAt: number;
  /**
   * Null for an ordinary batch. Set when the batch is an isolation retry: its
   * tasks come from a batch that failed as a whole and run apart from other
   * tasks until the failure is pinned down. `step` counts the splits so far
   * (0: a task that already failed alone, retried on its own); `groupSize` is
   * how many tasks the group was formed with.
   */
  readonly isolation: { readonly step: number; readonly groupSize: number } | null;
  readonly signal: AbortSignal;
}

type Scope =
  | { readonly kind: 'task'; readonly task: TaskContext }
  | { readonly kind: 'batch'; readonly batch: BatchContext; readonly tasks: ReadonlyMap<string, TaskContext> };

const storage = new AsyncLocalStorage<Scope>();

/** @internal */
export function runInTaskScope<T>(task: TaskContext, fn: () => T): T {
  return storage.run({ kind: 'task', task }, fn);
}

/** @internal */
export function runInBatchScope<T>(batch: BatchContext, tasks: ReadonlyMap<string, TaskContext>, fn: () => T): T {
  return storage.run({ kind: 'batch', batch, tasks }, fn);
}

/** Reads the context of the task or batch being executed. */
export const Task = {
  /** The running task's context. Inside a batch method, use `Task.contextOf(taskId)` or `Task.batch()`. */
  context(): TaskContext {
    const scope = storage.getStore();
    if (scope?.kind === 'task') return scope.task;
    if (scope?.kind === 'batch') {
      throw new TaskContextError(
        'Task.context() was called inside a batch method; use Task.contextOf(taskId) for one task or Task.batch() for the batch',
      );
    }
    throw new TaskContextError('Task.context() was called outside a task: it works only while a worker executes a task method');
  },

  /** The context of one task of the running batch. */
  contextOf(taskId: string): TaskContext {
    const scope = storage.getStore();
    if (scope?.kind !== 'batch') {
      throw new TaskContextError(
        scope?.kind === 'task'
          ? 'Task.contextOf() was called in a single task; use Task.context()'
          : 'Task.contextOf() was called outside a batch: it works only while a worker executes a @Batch method',
      );
    }
    const task = scope.tasks.get(taskId);
    if (!task) throw new TaskContextError(`Task.contextOf(${JSON.stringify(taskId)}): no such task in batch ${scope.batch.batchId}`);
    return task;
  },

  /** The running batch's context. */
  batch(): BatchContext {
    const scope = storage.getStore();
    if (scope?.kind === 'batch') return scope.batch;
    throw new TaskContextError(
      scope?.kind === 'task'
        ? 'Task.batch() was called in a single task (its method has no @Batch variant); use Task.context()'
        : 'Task.batch() was called outside a batch: it works only while a worker executes a @Batch method',
    );
  },
};
