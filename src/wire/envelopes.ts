/**
 * What travels on the topics, as versioned JSON.
 *
 * Every envelope carries `v` (the wire version) and `kind`. A reader accepts
 * exactly the versions it knows and rejects the rest with a reason, so that a
 * worker of an older release dead-letters a newer task instead of guessing.
 * Fields are only ever added as optional within a version; anything else is a
 * new version.
 */
import { isUtf8 } from 'node:buffer';
import { z } from 'zod';
import { DecodeError } from '../errors.js';
import { errorInfoSchema, type ErrorInfo } from './error-info.js';
import { NAME_PATTERN } from '../topics.js';
import { MAX_JOB_ID_LENGTH, MAX_JOB_TASKS, type TaskJobRef } from './job-events.js';
import { WIRE_VERSION } from './version.js';

export { WIRE_VERSION };

/** Task metadata. `batchKey` lives here, as in Infinitic. */
export type TaskMeta = Record<string, string>;

export interface TaskEnvelope {
  v: 1;
  kind: 'task';
  taskId: string;
  service: string;
  method: string;
  args: unknown[];
  meta: TaskMeta;
  tags: string[];
  /** Topic the worker publishes the outcome to; null for fire-and-forget dispatches without a client. */
  replyTo: string | null;
  /** Automatic retries made so far in this retry sequence (0 on the first execution). */
  retryIndex: number;
  /** Manual retries (dead-letter replays) made so far. */
  retrySequence: number;
  lastError: ErrorInfo | null;
  /** Epoch milliseconds at which the client dispatched the task. */
  dispatchedAt: number;
  /**
   * The dispatch's trace context (W3C `traceparent`/`tracestate`), when the
   * client runs with OpenTelemetry. Optional: envelopes without it stay v1.
   */
  trace?: TraceCarrier;
  /**
   * Set by clients that read result batches (`kind: 'resultBatch'`): a worker
   * then answers all the tasks of one batch for this client in one message.
   * Without it (older clients) every result travels alone. Optional: v1.
   */
  resultBatches?: boolean;
  /**
   * Set on the retry of a task whose batch failed as a whole: the task runs
   * only with the tasks of its isolation group until the failure is pinned
   * down (see `TaskIsolation`). Absent on ordinary tasks. Optional: v1.
   */
  isolation?: TaskIsolation;
  /**
   * The job the task belongs to and its index there, for tasks dispatched
   * through a job: the worker reports the task's final outcome to the job's
   * tracker before it acks the task (docs/jobs.md). Optional: v1.
   */
  job?: TaskJobRef;
}

/**
 * Where a task stands in the isolation of a failed batch. A batch that fails
 * as a whole is split into groups (halves when bisecting); each group's tasks
 * are batched only with each other, and a group that fails as a whole is split
 * again. A group of one that fails has found its poison: that task keeps a
 * group of its own for its later retries.
 */
export interface TaskIsolation {
  /** The group's id: tasks are batched only with tasks of the same group. */
  group: string;
  /** Tasks in the group when it was formed: its batch is flushed once they are all there. */
  size: number;
  /**
   * Splits this attempt has gone through (1 for the first); 0 on the retry of
   * a task that failed alone. Part of the attempt's identity: an isolation
   * retry is a new attempt of the same `retryIndex`.
   */
  step: number;
}

/** W3C trace-context headers, as OpenTelemetry's propagator writes them. */
export interface TraceCarrier {
  traceparent?: string;
  tracestate?: string;
}

export type ResultEnvelope =
  | {
      v: 1;
      kind: 'result';
      taskId: string;
      service: string;
      method: string;
      outcome: 'succeeded';
      value: unknown;
      attempts: number;
    }
  | {
      v: 1;
      kind: 'result';
      taskId: string;
      service: string;
      method: string;
      outcome: 'failed';
      reason: string;
      error: ErrorInfo;
      attempts: number;
    };

/**
 * The results of several tasks for one client in one message: what a worker
 * sends for a batch to a client whose tasks say `resultBatches`. Each entry is
 * a whole result envelope, so a reader settles them exactly as single results.
 */
export interface ResultBatchEnvelope {
  v: 1;
  kind: 'resultBatch';
  results: ResultEnvelope[];
}

/** Why a task ended on the dead-letter topic. */
export const DEAD_LETTER_REASONS = [
  'undecodable',
  'unknownService',
  'unknownMethod',
  'wrongArguments',
  'nonRetryable',
  'retriesExhausted',
  /** The task succeeded, but its result is larger than the broker accepts. */
  'resultTooLarge',
  /** Its `replyTo` is not a client result topic of the worker's namespace (see `isResultTopic`). */
  'badReplyTo',
] as const;
export type DeadLetterReason = (typeof DEAD_LETTER_REASONS)[number];

export interface DeadLetterEnvelope {
  v: 1;
  kind: 'deadLetter';
  reason: DeadLetterReason;
  /** Human-readable detail: what was wrong, and what to do. */
  detail: string;
  /** The task, when its envelope could be read. */
  task: TaskEnvelope | null;
  /** The original bytes, base64, when the envelope could not be read. */
  payloadBase64: string | null;
  error: ErrorInfo | null;
  attempts: number;
  worker: string;
  deadAt: number;
}

const nonEmpty = z.string().min(1);

const jobRefSchema = z.object({
  id: nonEmpty.max(MAX_JOB_ID_LENGTH),
  index: z
    .number()
    .int()
    .nonnegative()
    .max(MAX_JOB_TASKS - 1),
  onItemError: z.object({ service: z.string().regex(NAME_PATTERN), method: z.string().regex(NAME_PATTERN) }).optional(),
});

const taskSchema = z.object({
  v: z.literal(1),
  kind: z.literal('task'),
  taskId: nonEmpty,
  service: nonEmpty,
  method: nonEmpty,
  args: z.array(z.unknown()),
  meta: z.record(z.string(), z.string()),
  tags: z.array(z.string()),
  replyTo: z.string().nullable(),
  retryIndex: z.number().int().nonnegative(),
  retrySequence: z.number().int().nonnegative(),
  lastError: errorInfoSchema.nullable(),
  dispatchedAt: z.number(),
  trace: z.object({ traceparent: z.string().max(256).optional(), tracestate: z.string().max(1024).optional() }).optional(),
  resultBatches: z.boolean().optional(),
  isolation: z.object({ group: nonEmpty.max(64), size: z.number().int().positive(), step: z.number().int().nonnegative() }).optional(),
  job: jobRefSchema.optional(),
});

const resultSchema = z.discriminatedUnion('outcome', [
  z.object({
    v: z.literal(1),
    kind: z.literal('result'),
    taskId: nonEmpty,
    service: z.string(),
    method: z.string(),
    outcome: z.literal('succeeded'),
    value: z.unknown(),
    attempts: z.number().int().nonnegative(),
  }),
  z.object({
    v: z.literal(1),
    kind: z.literal('result'),
    taskId: nonEmpty,
    service: z.string(),
    method: z.string(),
    outcome: z.literal('failed'),
    reason: z.string(),
    error: errorInfoSchema,
    attempts: z.number().int().nonnegative(),
  }),
]);

const resultBatchSchema = z.object({
  v: z.literal(1),
  kind: z.literal('resultBatch'),
  results: z.array(resultSchema).min(1),
});

const deadLetterSchema = z.object({
  v: z.literal(1),
  kind: z.literal('deadLetter'),
  reason: z.enum(DEAD_LETTER_REASONS),
  detail: z.string(),
  task: taskSchema.nullable(),
  payloadBase64: z.string().nullable(),
  error: errorInfoSchema.nullable(),
  attempts: z.number().int().nonnegative(),
  worker: z.string(),
  deadAt: z.number(),
});

export function encodeEnvelope(envelope: TaskEnvelope | ResultEnvelope | ResultBatchEnvelope | DeadLetterEnvelope): Uint8Array {
  // Buffer.from is Node's native UTF-8 encoder: faster than TextEncoder on this hot path.
  return Buffer.from(JSON.stringify(envelope), 'utf8');
}

/** Strict UTF-8: `isUtf8` is a native check, cheaper than a fatal TextDecoder. */
function utf8(payload: Uint8Array): string {
  if (!isUtf8(payload)) throw new TypeError('invalid UTF-8');
  return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8');
}

export const decodeTask = (payload: Uint8Array): TaskEnvelope => {
  const raw = parseEnvelope(payload, 'task');
  return isPlainTask(raw) ? raw : check(raw, 'task', taskSchema);
};
export const decodeResult = (payload: Uint8Array): ResultEnvelope => decode(payload, 'result', resultSchema) as ResultEnvelope;
/** The results a result message holds: one (`kind: 'result'`) or a worker's batch (`kind: 'resultBatch'`). */
export function decodeResults(payload: Uint8Array): readonly ResultEnvelope[] {
  const raw = parseEnvelope(payload, 'result');
  if ((raw as { kind?: unknown }).kind === 'resultBatch') {
    const results = (raw as { results?: unknown }).results;
    if (Array.isArray(results) && results.length > 0 && results.every(isPlainSuccess)) return results;
    return check(raw, 'resultBatch', resultBatchSchema).results as ResultEnvelope[];
  }
  return [isPlainSuccess(raw) ? raw : (check(raw, 'result', resultSchema) as ResultEnvelope)];
}

/*
 * Shortcuts for the hot path: the envelopes every task and result travel in,
 * recognised by plain checks and taken as parsed (zod validates by building a
 * copy, which cost a tenth of a task's CPU with its garbage). They accept a
 * subset of what the schemas above accept (a unit test holds them to that);
 * anything else, retries with their last error included, goes through the
 * schema, which also words the errors.
 */
const isString = (x: unknown): x is string => typeof x === 'string';
const isCount = (x: unknown): boolean => Number.isInteger(x) && (x as number) >= 0;

function isPlainTask(raw: object): raw is TaskEnvelope {
  const t = raw as Record<string, unknown>;
  return (
    t.v === WIRE_VERSION &&
    t.kind === 'task' &&
    isString(t.taskId) &&
    t.taskId !== '' &&
    isString(t.service) &&
    t.service !== '' &&
    isString(t.method) &&
    t.method !== '' &&
    Array.isArray(t.args) &&
    isStringRecord(t.meta) &&
    Array.isArray(t.tags) &&
    t.tags.every(isString) &&
    (t.replyTo === null || isString(t.replyTo)) &&
    isCount(t.retryIndex) &&
    isCount(t.retrySequence) &&
    t.lastError === null &&
    typeof t.dispatchedAt === 'number' &&
    (t.trace === undefined || isPlainTrace(t.trace)) &&
    (t.resultBatches === undefined || typeof t.resultBatches === 'boolean') &&
    t.isolation === undefined &&
    (t.job === undefined || isJobRef(t.job))
  );
}

function isJobRef(x: unknown): boolean {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) return false;
  const { id, index, onItemError } = x as Record<string, unknown>;
  return (
    isString(id) &&
    id !== '' &&
    id.length <= MAX_JOB_ID_LENGTH &&
    isCount(index) &&
    (index as number) < MAX_JOB_TASKS &&
    (onItemError === undefined || isCallbackTarget(onItemError))
  );
}

/** A service and method of valid names: where a job's item-error callback goes. */
function isCallbackTarget(x: unknown): boolean {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) return false;
  const { service, method } = x as Record<string, unknown>;
  return isString(service) && NAME_PATTERN.test(service) && isString(method) && NAME_PATTERN.test(method);
}

function isStringRecord(x: unknown): x is Record<string, string> {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) return false;
  for (const key in x) if (!isString((x as Record<string, unknown>)[key])) return false;
  return true;
}

function isPlainTrace(x: unknown): boolean {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) return false;
  const { traceparent, tracestate } = x as Record<string, unknown>;
  return (
    (traceparent === undefined || (isString(traceparent) && traceparent.length <= 256)) &&
    (tracestate === undefined || (isString(tracestate) && tracestate.length <= 1024))
  );
}

/** A successful result (failures, rarer, go through the schema for their error). */
function isPlainSuccess(x: unknown): x is ResultEnvelope {
  if (x === null || typeof x !== 'object') return false;
  const r = x as Record<string, unknown>;
  return (
    r.v === WIRE_VERSION &&
    r.kind === 'result' &&
    r.outcome === 'succeeded' &&
    isString(r.taskId) &&
    r.taskId !== '' &&
    isString(r.service) &&
    isString(r.method) &&
    'value' in r &&
    isCount(r.attempts)
  );
}
export const decodeDeadLetter = (payload: Uint8Array): DeadLetterEnvelope => decode(payload, 'deadLetter', deadLetterSchema);

/** The fields `salvageTaskFields` could read. */
export interface SalvagedTaskFields {
  taskId?: string;
  replyTo?: string;
  service?: string;
  method?: string;
  /** The task's job, when it names one validly: its job must count it, or never finishes. */
  job?: TaskJobRef;
}

/**
 * What can still be read from a payload that is not a valid envelope: enough,
 * sometimes, to tell the waiting client that its task can never run, and its
 * job that it is settled.
 */
export function salvageTaskFields(payload: Uint8Array): SalvagedTaskFields {
  try {
    const raw = JSON.parse(utf8(payload)) as unknown;
    if (raw === null || typeof raw !== 'object') return {};
    const r = raw as Record<string, unknown>;
    const out: SalvagedTaskFields = {};
    const job = jobRefSchema.safeParse(r.job);
    if (job.success) out.job = job.data;
    if (typeof r.taskId === 'string' && r.taskId !== '') out.taskId = r.taskId;
    if (typeof r.replyTo === 'string' && r.replyTo !== '') out.replyTo = r.replyTo;
    if (typeof r.service === 'string') out.service = r.service;
    if (typeof r.method === 'string') out.method = r.method;
    return out;
  } catch {
    return {};
  }
}

function decode<T>(payload: Uint8Array, kind: string, schema: z.ZodType<T>): T {
  return check(parseEnvelope(payload, kind), kind, schema);
}

/** The payload as a JSON object of this wire version, or a DecodeError saying what it is instead. */
function parseEnvelope(payload: Uint8Array, kind: string): object {
  let text: string;
  try {
    text = utf8(payload);
  } catch (cause) {
    throw new DecodeError(`${kind} payload is not valid UTF-8 (${payload.byteLength} bytes)`, { cause });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (cause) {
    throw new DecodeError(`${kind} payload is not JSON: ${(cause as Error).message}`, { cause });
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new DecodeError(`${kind} payload is not a JSON object`);
  }
  const header = raw as { v?: unknown };
  if (header.v !== WIRE_VERSION) {
    throw new DecodeError(
      `${kind} envelope has wire version ${JSON.stringify(header.v)}; this Sheaf reads version ${WIRE_VERSION} (upgrade the worker if the sender is newer)`,
    );
  }
  return raw;
}

function check<T>(raw: object, kind: string, schema: z.ZodType<T>): T {
  const found = (raw as { kind?: unknown }).kind;
  if (found !== kind) {
    throw new DecodeError(`expected a ${kind} envelope, got kind ${JSON.stringify(found)}`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new DecodeError(`invalid ${kind} envelope: ${problems}`);
  }
  return parsed.data;
}

/** @internal The hot-path shortcuts and the schemas they must agree with, for the tests. */
export const envelopeChecks = { isPlainTask, isPlainSuccess, taskSchema, resultSchema };

/**
 * A job callback as a task (`onSuccess`, `onComplete`, `onItemError`): its
 * stable id `taskId` makes every dispatch of it the same task, keyed by the
 * job, with no reply.
 */
export function jobCallbackTask(
  target: { service: string; method: string },
  taskId: string,
  jobId: string,
  argument: unknown,
  at: number,
): TaskEnvelope {
  return {
    v: 1,
    kind: 'task',
    taskId,
    service: target.service,
    method: target.method,
    args: [argument],
    meta: { batchKey: jobId, 'sheaf-job-callback': target.method },
    tags: ['sheaf-job-callback'],
    replyTo: null,
    retryIndex: 0,
    retrySequence: 0,
    lastError: null,
    dispatchedAt: at,
  };
}
