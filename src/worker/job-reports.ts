/**
 * What a worker tells a job about its tasks: each final outcome (succeeded,
 * failed for good, dead-lettered) as `tasksSettled` events on the job-events
 * topic, and, for a job that names one, its item-error callback as a task.
 * The settler calls these after a task's outcome is durable and before its
 * message is acked; a report that fails hands the task back, and the
 * tracker counts a task index once however often it hears of it.
 */
import { jobCallbackTask, type DeadLetterReason, type TaskEnvelope } from '../wire/envelopes.js';
import type { ErrorInfo } from '../wire/error-info.js';
import { MAX_SETTLED_PER_EVENT, type JobFact, type JobItemError, type JobTaskOutcome } from '../wire/job-events.js';
import type { OutcomePublisher } from './outcome-publisher.js';

/** One job task's final outcome, as the settler knows it. */
export interface JobTaskReport {
  readonly envelope: TaskEnvelope;
  /** Failed for good (else succeeded). */
  readonly failed: boolean;
  readonly reason: DeadLetterReason | null;
  readonly error: ErrorInfo | null;
}

/**
 * Reports job tasks' final outcomes: one event per job per batch (as
 * results travel in one message per client), after the item-error
 * callbacks of the failed ones, so that a report that stands is never
 * followed by a lost callback. Rejects when any of it could not be sent.
 */
export async function reportJobOutcomes(publisher: OutcomePublisher, reports: readonly JobTaskReport[], now: number): Promise<void> {
  const byJob = new Map<string, Array<[number, JobTaskOutcome]>>();
  for (const report of reports) {
    const job = report.envelope.job!;
    let tasks = byJob.get(job.id);
    if (!tasks) byJob.set(job.id, (tasks = []));
    tasks.push([job.index, jobOutcome(report.failed, report.reason)]);
  }
  await Promise.all(
    reports.flatMap((report) => (report.failed ? [callItemError(publisher, report.envelope, report.reason, report.error, now)] : [])),
  );
  await publisher.publishJobEvents([...byJob].flatMap(([jobId, tasks]) => settledEvents(jobId, tasks, now)));
}

/**
 * A job task that failed for good, when its job names an item-error
 * callback: that callback as a task, with the stable id
 * `<jobId>:onItemError:<index>` (dispatched again if this task runs again).
 */
export async function callItemError(
  publisher: OutcomePublisher,
  e: TaskEnvelope,
  reason: DeadLetterReason | null,
  error: ErrorInfo | null,
  now: number,
): Promise<void> {
  const job = e.job;
  if (!job?.onItemError) return;
  const item: JobItemError = {
    jobId: job.id,
    index: job.index,
    taskId: e.taskId,
    service: e.service,
    method: e.method,
    args: e.args,
    reason: reason ?? 'failed',
    error: { name: error?.name ?? 'Error', message: error?.message ?? '' },
  };
  await publisher.publishCallbackTask(jobCallbackTask(job.onItemError, `${job.id}:onItemError:${job.index}`, job.id, item, now));
}

/**
 * How a job counts a final settlement: `failed` when the task ran and failed
 * for good (its retries used up, or a non-retryable error), `deadLettered`
 * when it could not run or its outcome could not be delivered (unknown
 * method, wrong arguments, a result too large, ...). Both are dead letters.
 */
function jobOutcome(failed: boolean, reason: DeadLetterReason | null): JobTaskOutcome {
  if (!failed) return 'succeeded';
  return reason === 'retriesExhausted' || reason === 'nonRetryable' ? 'failed' : 'deadLettered';
}

/** `tasks` of one job as `tasksSettled` events, split at `MAX_SETTLED_PER_EVENT`. */
export function settledEvents(jobId: string, tasks: Array<[number, JobTaskOutcome]>, at: number): JobFact[] {
  const events: JobFact[] = [];
  for (let i = 0; i < tasks.length; i += MAX_SETTLED_PER_EVENT) {
    events.push({ v: 1, kind: 'tasksSettled', jobId, tasks: tasks.slice(i, i + MAX_SETTLED_PER_EVENT), at });
  }
  return events;
}
