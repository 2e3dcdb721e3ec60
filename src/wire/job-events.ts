/**
 * What travels on a namespace's job-events topic (`sheaf-job-events`), keyed
 * by job id: a job's creation and seal, written by the client that runs the
 * job, and `tasksSettled` (the final outcomes of a batch's tasks of the job), written
 * by the worker before it acks the task (docs/jobs.md). Versioned like every
 * envelope; a message that does not match is reported and skipped by the
 * job tracker, never thrown.
 */
import { z } from 'zod';
import { parseWithSchema } from './parse-json.js';
import { WIRE_VERSION } from './version.js';

/** Longest job id accepted: ids travel in every task of the job and key every event. */
export const MAX_JOB_ID_LENGTH = 128;
/** What a job id given by a user (`resumeJob`, the CLI) must look like: the ids Sheaf makes (`job-<uuid>`) do. */
export const JOB_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/**
 * Most tasks a job may hold: task indexes run from 0 to this, exclusive. It
 * bounds the tracker's memory per job (a bit per task: 1.25 MiB at most)
 * against an event whose index was made up.
 */
export const MAX_JOB_TASKS = 10_000_000;

/** Task outcomes in one `tasksSettled` event at most; a writer splits larger sets. */
export const MAX_SETTLED_PER_EVENT = 10_000;

/** A task's final outcome as a job counts it. */
export type JobTaskOutcome = 'succeeded' | 'failed' | 'deadLettered';

/** Where a task stands in its job: carried in the task's envelope, copied into the `tasksSettled` event of its outcome. */
export interface TaskJobRef {
  /** The job's id. */
  id: string;
  /** The task's index in the job, from 0, given by the dispatcher in dispatch order. */
  index: number;
  /** Where the worker dispatches the item-error callback when this task fails for good (`JobCallbacks.onItemError`). */
  onItemError?: { service: string; method: string };
}

/** The argument of a job's `onItemError` callback: the task that failed for good, and why. */
export interface JobItemError {
  readonly jobId: string;
  /** The task's index in the job (for `addAll`, the item's position in the input). */
  readonly index: number;
  readonly taskId: string;
  readonly service: string;
  readonly method: string;
  /** The task's arguments as dispatched. */
  readonly args: unknown[];
  /** `retriesExhausted`, `nonRetryable`, or the reason it was dead-lettered. */
  readonly reason: string;
  /** The last error, as written to the dead letter (no stack unless `errors.includeStack`). */
  readonly error: { name: string; message: string };
}

/** The service and methods a job's callbacks are dispatched to, each with the job's counts. */
export interface JobCallbacks {
  service: string;
  /** Called once the job finished with nothing failed or dead-lettered. */
  onSuccess?: string;
  /** Called once the job finished, whatever its outcome. */
  onComplete?: string;
  /**
   * Called once per task of the job that fails for good (or is
   * dead-lettered), with a `JobItemError`, by the worker that settled it,
   * before it acks the task: at least once, with the stable task id
   * `<jobId>:onItemError:<index>`.
   */
  onItemError?: string;
}

/** What `job.status()` answers; every figure counts distinct tasks. */
export interface JobStatus {
  readonly jobId: string;
  readonly name: string | undefined;
  /** The number of tasks of the job, once it is sealed; null before. */
  readonly total: number | null;
  readonly sealed: boolean;
  readonly succeeded: number;
  readonly failed: number;
  readonly deadLettered: number;
  /** Tasks of a sealed job without a final outcome yet; null before the seal. */
  readonly pending: number | null;
  /** Settled tasks in per cent of the total (0-100, one decimal); null before the seal. */
  readonly percent: number | null;
  /** Epoch ms of the job's creation (of its first event, if its creation was not seen). */
  readonly startedAt: number;
  /** Epoch ms at which the tracker marked the job finished; null while it runs. */
  readonly finishedAt: number | null;
  /**
   * The job stopped at its first final failure (`continueOnError: false`):
   * it is finished, and its tasks that had not settled are cancelled
   * (workers acknowledge them without running them).
   */
  readonly stopped: boolean;
  /** Tasks of a stopped job that did not settle (total minus settled, once sealed); 0 for a job that did not stop. */
  readonly cancelled: number | null;
}

/** What a tracker writes down for a job, and a new tracker starts from. */
export interface JobSnapshot {
  readonly v: 1;
  readonly kind: 'jobState';
  readonly jobId: string;
  readonly name?: string;
  readonly meta: Record<string, string>;
  readonly callbacks?: JobCallbacks;
  readonly continueOnError: boolean;
  readonly total: number | null;
  /** Each task's outcome, two bits per index (0 none, 1 succeeded, 2 failed, 3 dead-lettered), base64, up to the last byte in use. */
  readonly outcomes: string;
  readonly startedAt: number;
  readonly finishedAt: number | null;
  /** The job's callbacks were dispatched (after the finished mark was durable). */
  readonly callbacksSent: boolean;
}

/** Asks the tracker to publish a job's status now (`attachJob`, a status nobody has seen yet). */
export interface JobStatusRequest {
  readonly v: 1;
  readonly kind: 'jobStatusRequest';
  readonly jobId: string;
}

/** Most jobs one `jobList` message carries (a `jobListRequest`'s limit, and each part of an answer to `all`). */
export const MAX_JOBS_LISTED = 1000;

/** Most parts an answer to `all` may say it has: a million jobs, far past what one tracker holds. */
export const MAX_JOB_LIST_PARTS = 1000;

/**
 * Asks the tracker for the statuses of the jobs it holds (`sheaf job list`),
 * the most recently started first; answered with one `jobList` on
 * `sheaf-job-answers` carrying the same `requestId`. Keyed by the request id.
 */
export interface JobListRequest {
  readonly v: 1;
  readonly kind: 'jobListRequest';
  readonly requestId: string;
  readonly limit: number;
  /**
   * Every job the tracker holds, whatever `limit` says: answered in parts of
   * at most `MAX_JOBS_LISTED` (`JobListMessage.part`). A client loads its
   * table of job statuses this way (src/client/job-status-feed.ts).
   */
  readonly all?: boolean;
}

/** The tracker's answer to a `jobListRequest`. */
export interface JobListMessage {
  readonly v: 1;
  readonly kind: 'jobList';
  readonly requestId: string;
  readonly statuses: JobStatus[];
  /** The epoch of the tracker that answered (as on `JobStatusMessage`); absent from older trackers. */
  readonly epoch?: number;
  /** Which part of an answer to `all` this is (index from 0, of count); absent: the whole answer. */
  readonly part?: { readonly index: number; readonly count: number };
}

/** A job's status as the tracker publishes it on `sheaf-job-state` for clients. */
export interface JobStatusMessage {
  readonly v: 1;
  readonly kind: 'jobStatus';
  readonly status: JobStatus;
  /**
   * The epoch of the tracker that wrote it (its exclusive producer's on
   * `sheaf-job-snapshots`): a reader keeps no status from a lower epoch once
   * it has one from a higher, so a tracker that lost its turn and wakes up
   * cannot take a job's progress back. Absent from older trackers.
   */
  readonly epoch?: number;
}

/**
 * Written by a tracker that has just taken `sheaf-job-snapshots` over, as
 * its first message there: once its own subscription gives it back, every
 * snapshot of the trackers before it has been read, and it may finish jobs.
 */
export interface TrackerActivated {
  readonly v: 1;
  readonly kind: 'trackerActivated';
  readonly trackerId: string;
  readonly epoch: number;
  readonly at: number;
}

/** A job's creation, written by the client that creates it. */
export interface JobCreated {
  v: 1;
  kind: 'jobCreated';
  jobId: string;
  name?: string;
  meta: Record<string, string>;
  callbacks?: JobCallbacks;
  /** False: the first final failure fails the job, and its remaining tasks are skipped. */
  continueOnError: boolean;
  at: number;
}

/**
 * A resumable job's dispatch checkpoint: every task index below
 * `dispatched` is stored. Its sequence id on the job's named producer is the
 * durable record (src/client/resumable-dispatch.ts); the tracker only acks it.
 */
export interface JobDispatched {
  readonly v: 1;
  readonly kind: 'jobDispatched';
  readonly jobId: string;
  readonly dispatched: number;
  readonly at: number;
}

/** Facts about one job, in the order a job produces them (settlements may come before the seal). */
export type JobFact =
  | JobCreated
  | { v: 1; kind: 'jobSealed'; jobId: string; total: number; at: number }
  /** Final outcomes of tasks of the job, by index: one event per job per settled batch. */
  | { v: 1; kind: 'tasksSettled'; jobId: string; tasks: Array<[index: number, outcome: JobTaskOutcome]>; at: number };

/** What a tracker reads: facts, its snapshots, dispatch checkpoints and list requests (events topic), status requests (`sheaf-job-requests`). */
export type JobEvent = JobFact | JobSnapshot | JobStatusRequest | JobDispatched | JobListRequest | TrackerActivated;

const jobId = z.string().min(1).max(MAX_JOB_ID_LENGTH);
const epochMs = z.number().int().nonnegative();
const name = z.string().min(1).max(256);

const count = z.number().int().nonnegative().max(MAX_JOB_TASKS);
const callbacksSchema = z.object({ service: name, onSuccess: name.optional(), onComplete: name.optional(), onItemError: name.optional() });

const jobEventSchema = z.discriminatedUnion('kind', [
  z.object({
    v: z.literal(WIRE_VERSION),
    kind: z.literal('jobCreated'),
    jobId,
    name: name.optional(),
    meta: z.record(z.string().max(256), z.string().max(4096)),
    callbacks: callbacksSchema.optional(),
    continueOnError: z.boolean(),
    at: epochMs,
  }),
  z.object({
    v: z.literal(WIRE_VERSION),
    kind: z.literal('jobSealed'),
    jobId,
    total: z.number().int().nonnegative().max(MAX_JOB_TASKS),
    at: epochMs,
  }),
  z.object({
    v: z.literal(WIRE_VERSION),
    kind: z.literal('tasksSettled'),
    jobId,
    tasks: z
      .array(
        z.tuple([
          z
            .number()
            .int()
            .nonnegative()
            .max(MAX_JOB_TASKS - 1),
          z.enum(['succeeded', 'failed', 'deadLettered']),
        ]),
      )
      .min(1)
      .max(MAX_SETTLED_PER_EVENT),
    at: epochMs,
  }),
  z.object({
    v: z.literal(WIRE_VERSION),
    kind: z.literal('jobState'),
    jobId,
    name: name.optional(),
    meta: z.record(z.string().max(256), z.string().max(4096)),
    callbacks: callbacksSchema.optional(),
    continueOnError: z.boolean(),
    total: count.nullable(),
    // Base64 of two bits per task: 4/3 of MAX_JOB_TASKS / 4 bytes.
    outcomes: z
      .string()
      .max(Math.ceil(MAX_JOB_TASKS / 3) + 4)
      .regex(/^[A-Za-z0-9+/]*={0,2}$/),
    startedAt: epochMs,
    finishedAt: epochMs.nullable(),
    callbacksSent: z.boolean(),
  }),
  z.object({ v: z.literal(WIRE_VERSION), kind: z.literal('jobStatusRequest'), jobId }),
  z.object({ v: z.literal(WIRE_VERSION), kind: z.literal('jobDispatched'), jobId, dispatched: count, at: epochMs }),
  z.object({
    v: z.literal(WIRE_VERSION),
    kind: z.literal('trackerActivated'),
    trackerId: z.string().min(1).max(64),
    epoch: z.number().int().nonnegative(),
    at: epochMs,
  }),
  z.object({
    v: z.literal(WIRE_VERSION),
    kind: z.literal('jobListRequest'),
    requestId: z.string().min(1).max(64),
    limit: z.number().int().positive().max(MAX_JOBS_LISTED),
    all: z.boolean().optional(),
  }),
]);

const statusSchema = z.object({
  jobId,
  name: name.optional(),
  total: count.nullable(),
  sealed: z.boolean(),
  succeeded: count,
  failed: count,
  deadLettered: count,
  pending: count.nullable(),
  percent: z.number().min(0).max(100).nullable(),
  startedAt: epochMs,
  finishedAt: epochMs.nullable(),
  // Optional on the wire: statuses from trackers older than these fields read as a job that did not stop.
  stopped: z.boolean().default(false),
  cancelled: count.nullable().default(0),
});

const jobStateSchema = z.discriminatedUnion('kind', [
  z.object({
    v: z.literal(WIRE_VERSION),
    kind: z.literal('jobStatus'),
    status: statusSchema,
    epoch: z.number().int().nonnegative().optional(),
  }),
  z.object({
    v: z.literal(WIRE_VERSION),
    kind: z.literal('jobList'),
    requestId: z.string().min(1).max(64),
    statuses: z.array(statusSchema).max(MAX_JOBS_LISTED),
    epoch: z.number().int().nonnegative().optional(),
    part: z
      .object({ index: z.number().int().nonnegative(), count: z.number().int().positive().max(MAX_JOB_LIST_PARTS) })
      .refine((part) => part.index < part.count, 'part.index must be below part.count')
      .optional(),
  }),
]);

/** The event (or status, or list) as bytes. */
export function encodeJobEvent(event: JobEvent | JobStatusMessage | JobListMessage): Uint8Array {
  return Buffer.from(JSON.stringify(event), 'utf8');
}

/**
 * The tracker's answer to a list request as messages: one, or (`inParts`)
 * one per `MAX_JOBS_LISTED` statuses, each saying which part of how many it
 * is (about a millisecond each to encode).
 */
export function encodeJobList(requestId: string, statuses: JobStatus[], epoch: number, inParts: boolean): Uint8Array[] {
  if (!inParts) return [encodeJobEvent({ v: 1, kind: 'jobList', requestId, statuses, epoch })];
  const count = Math.max(1, Math.ceil(statuses.length / MAX_JOBS_LISTED));
  return [...Array(count).keys()].map((index) =>
    encodeJobEvent({
      v: 1,
      kind: 'jobList',
      requestId,
      statuses: statuses.slice(index * MAX_JOBS_LISTED, (index + 1) * MAX_JOBS_LISTED),
      epoch,
      part: { index, count },
    }),
  );
}

/** The event a message holds, or why it was not understood (bad JSON, another version, a field out of bounds). */
export function decodeJobEvent(payload: Uint8Array): { event: JobEvent } | { problem: string } {
  const parsed = parseWithSchema(payload, jobEventSchema, plainTasksSettled);
  return 'problem' in parsed ? parsed : { event: parsed.value as JobEvent };
}

/** What a `sheaf-job-state` message holds (a status, or the answer to a list request), or why it was not understood. */
export function decodeJobState(
  payload: Uint8Array,
): { status: JobStatus; epoch: number | undefined } | { list: JobListMessage } | { problem: string } {
  const parsed = parseWithSchema(payload, jobStateSchema);
  if ('problem' in parsed) return parsed;
  const message = parsed.value;
  if (message.kind === 'jobStatus') return { status: withName(message.status), epoch: message.epoch };
  return { list: { ...message, statuses: message.statuses.map(withName) } };
}

/** A status as read: `name` present (undefined when the job has none). */
function withName(status: z.infer<typeof statusSchema>): JobStatus {
  return { ...status, name: status.name };
}

const OUTCOMES = new Set<unknown>(['succeeded', 'failed', 'deadLettered']);

/**
 * A `tasksSettled` event checked by hand, as the schema would, without the
 * schema's copy of every pair: it is the event a tracker reads most (one
 * per job per batch, hundreds of pairs each). Null when anything differs:
 * the schema then reads it and names the problem.
 */
function plainTasksSettled(raw: unknown): JobEvent | null {
  if (raw === null || typeof raw !== 'object') return null;
  const e = raw as Record<string, unknown>;
  if (e.kind !== 'tasksSettled' || e.v !== WIRE_VERSION || Object.keys(e).length !== 5) return null;
  const { jobId: id, tasks, at } = e;
  if (typeof id !== 'string' || id.length === 0 || id.length > MAX_JOB_ID_LENGTH) return null;
  if (typeof at !== 'number' || !Number.isInteger(at) || at < 0) return null;
  if (!Array.isArray(tasks) || tasks.length === 0 || tasks.length > MAX_SETTLED_PER_EVENT) return null;
  for (const pair of tasks as unknown[]) {
    if (!Array.isArray(pair) || pair.length !== 2) return null;
    const [index, outcome] = pair as [unknown, unknown];
    if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= MAX_JOB_TASKS || !OUTCOMES.has(outcome)) return null;
  }
  return raw as JobEvent;
}
