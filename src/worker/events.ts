import type { DeadLetterReason } from '../wire/envelopes.js';
import type { FlushReason } from './batch-buffer.js';

/** One executed batch: what the worker logs as one line. */
export interface BatchReport {
  readonly service: string;
  readonly method: string;
  readonly batchMethod: string;
  readonly batchKey: string | null;
  readonly batchId: string;
  readonly size: number;
  readonly bytes: number;
  readonly flushReason: FlushReason;
  /** How long the first task waited in the aggregate before the flush. */
  readonly waitMs: number;
  /** How long each task waited in the aggregate, in batch order. */
  readonly taskWaitsMs: readonly number[];
  readonly durationMs: number;
  readonly succeeded: number;
  readonly retried: number;
  readonly failed: number;
  /** Tasks sent back in isolation groups because the batch failed as a whole. */
  readonly isolated: number;
  /** Null for an ordinary batch; see `BatchContext.isolation`. */
  readonly isolation: { readonly step: number; readonly groupSize: number } | null;
  readonly contractErrors: readonly string[];
}

/**
 * How a task message was settled. `twin`: a second copy of an attempt this
 * worker settled recently (or of a task in the same batch), acked without
 * running again; or a copy that ran on two workers at once and failed for
 * good, whose dead letter the other worker wrote (its result still goes). `isolated`: its batch failed as a whole, and the task went
 * back in an isolation group, without using a retry. `deferred`: given back
 * to the broker unrun, to come again later, because its key had all of its
 * slots busy while other keys' tasks could not be received. `cancelled`:
 * a task of a job that stopped at its first failure (`continueOnError:
 * false`), acked without running.
 */
export type TaskSettlement = 'succeeded' | 'retried' | 'failed' | 'redelivered' | 'twin' | 'isolated' | 'deferred' | 'cancelled';

/** One task message settled (acked, or handed back to the broker). */
export interface TaskReport {
  readonly taskId: string;
  readonly service: string;
  readonly method: string | null;
  readonly batchKey: string | null;
  readonly settlement: TaskSettlement;
  /** For `failed`: why the task ended. */
  readonly reason: DeadLetterReason | null;
  /** Executions in the current retry sequence, this one included (0 if it never ran). */
  readonly attempts: number;
  /** It failed alone after its batch was split: the task that failed its batches. */
  readonly poison: boolean;
}

export interface WorkerEvents {
  batch: [BatchReport];
  task: [TaskReport];
  /** The worker stopped working (a consume loop died); `close()` still drains and releases. */
  failed: [unknown];
}
