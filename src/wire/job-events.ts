/**
 * What travels on a namespace's job-events topic (`sheaf-job-events`), keyed
 * by job id: a job's creation and seal, written by the client that runs the
 * job, and one `taskSettled` per final outcome of a task of the job, written
 * by the worker before it acks the task (docs/jobs.md). Versioned like every
 * envelope; a message that does not match is reported and skipped by the
 * job tracker, never thrown.
 */
import { z } from 'zod';
import { WIRE_VERSION } from './version.js';

/** Longest job id accepted: ids travel in every task of the job and key every event. */
export const MAX_JOB_ID_LENGTH = 128;
/**
 * Most tasks a job may hold: task indexes run from 0 to this, exclusive. It
 * bounds the tracker's memory per job (a bit per task: 1.25 MiB at most)
 * against an event whose index was made up.
 */
export const MAX_JOB_TASKS = 10_000_000;

/** A task's final outcome as a job counts it. */
export type JobTaskOutcome = 'succeeded' | 'failed' | 'deadLettered';

/** Where a task stands in its job: carried in the task's envelope, copied into its `taskSettled` event. */
export interface TaskJobRef {
  /** The job's id. */
  id: string;
  /** The task's index in the job, from 0, given by the dispatcher in dispatch order. */
  index: number;
}

/** The service and methods a job's callbacks are dispatched to, each with the job's counts. */
export interface JobCallbacks {
  service: string;
  /** Called once the job finished with nothing failed or dead-lettered. */
  onSuccess?: string;
  /** Called once the job finished, whatever its outcome. */
  onComplete?: string;
}

/** Events of one job, in the order a job produces them (settlements may come before the seal). */
export type JobEvent =
  | {
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
  | { v: 1; kind: 'jobSealed'; jobId: string; total: number; at: number }
  | { v: 1; kind: 'taskSettled'; jobId: string; index: number; taskId: string; outcome: JobTaskOutcome; at: number };

const jobId = z.string().min(1).max(MAX_JOB_ID_LENGTH);
const epochMs = z.number().int().nonnegative();
const name = z.string().min(1).max(256);

const jobEventSchema = z.discriminatedUnion('kind', [
  z.object({
    v: z.literal(WIRE_VERSION),
    kind: z.literal('jobCreated'),
    jobId,
    name: name.optional(),
    meta: z.record(z.string().max(256), z.string().max(4096)),
    callbacks: z.object({ service: name, onSuccess: name.optional(), onComplete: name.optional() }).optional(),
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
    kind: z.literal('taskSettled'),
    jobId,
    index: z
      .number()
      .int()
      .nonnegative()
      .max(MAX_JOB_TASKS - 1),
    taskId: z.string().min(1).max(512),
    outcome: z.enum(['succeeded', 'failed', 'deadLettered']),
    at: epochMs,
  }),
]);

/** The event as bytes. */
export function encodeJobEvent(event: JobEvent): Uint8Array {
  return Buffer.from(JSON.stringify(event), 'utf8');
}

/** The event a message holds, or why it was not understood (bad JSON, another version, a field out of bounds). */
export function decodeJobEvent(payload: Uint8Array): { event: JobEvent } | { problem: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
  } catch (error) {
    return { problem: `not JSON: ${(error as Error).message.slice(0, 120)}` };
  }
  const parsed = jobEventSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { problem: `${issue?.path.join('.') || 'message'}: ${issue?.message ?? 'invalid'}` };
  }
  return { event: parsed.data as JobEvent };
}
