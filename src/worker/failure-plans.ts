/**
 * How the failed tasks of one execution go back, by the executor's
 * `isolation` mode. A batch of several tasks that failed as a whole (a
 * throw, a timeout, a broken contract) blames none of its tasks more than
 * another, so none is retried with tasks it was not with: the tasks are
 * split into isolation groups (two halves for `bisect`, one task each for
 * `single`), which go back without counting a retry. A task that fails
 * alone under isolation has failed: it follows its retry policy, in a group
 * of its own. Everything else (`none`, or per-task errors) retries as usual.
 */
import { randomUUID } from 'node:crypto';
import type { IsolationMode } from '../config/executor-schema.js';
import type { TaskEnvelope, TaskIsolation } from '../wire/envelopes.js';

/** How one failed task goes back: into an isolation group (not a retry), or by its retry policy (alone or not). */
export type FailurePlan =
  { readonly kind: 'isolate'; readonly isolation: TaskIsolation } | { readonly kind: 'retry'; readonly alone: boolean };

/**
 * One plan per failed task (`failed[i]`'s is `plans[i]`), in batch order.
 * `failedAsWhole`: the batch failed as a whole; `batchSize`: how many tasks
 * it ran (the failed ones and any others).
 */
export function planFailures(
  mode: IsolationMode,
  failed: ReadonlyArray<Pick<TaskEnvelope, 'isolation'>>,
  failedAsWhole: boolean,
  batchSize: number,
): FailurePlan[] {
  if (mode === 'none') return failed.map(() => ({ kind: 'retry', alone: false }));
  if (!failedAsWhole || batchSize === 1) {
    return failed.map((task) => ({ kind: 'retry', alone: batchSize === 1 && (failedAsWhole || task.isolation !== undefined) }));
  }
  // Every task of the batch failed (as a whole): split them, in batch order.
  const half = Math.ceil(failed.length / 2);
  const groupOf = (i: number): number => (mode === 'single' ? i : i < half ? 0 : 1);
  const groups = new Map<number, { id: string; size: number }>();
  failed.forEach((_, i) => {
    const g = groupOf(i);
    const group = groups.get(g);
    if (group) group.size += 1;
    else groups.set(g, { id: randomUUID(), size: 1 });
  });
  return failed.map((task, i) => {
    const group = groups.get(groupOf(i))!;
    return { kind: 'isolate', isolation: { group: group.id, size: group.size, step: (task.isolation?.step ?? 0) + 1 } };
  });
}
