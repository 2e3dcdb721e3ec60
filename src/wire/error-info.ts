import { z } from 'zod';
import { RemoteTaskError } from '../errors.js';

/** An error as it travels between worker and client. */
export interface ErrorInfo {
  name: string;
  message: string;
  stack?: string | undefined;
  /** JSON-safe own fields of the error (codes, ids), when it has any. */
  data?: unknown;
  cause?: ErrorInfo | undefined;
}

export const errorInfoSchema: z.ZodType<ErrorInfo> = z.lazy(() =>
  z.object({
    name: z.string(),
    message: z.string(),
    stack: z.string().optional(),
    data: z.unknown().optional(),
    cause: errorInfoSchema.optional(),
  }),
);

const MAX_CAUSE_DEPTH = 5;
const STANDARD_FIELDS = new Set(['name', 'message', 'stack', 'cause']);

/** Describes anything thrown (an Error or not) as an `ErrorInfo`. */
export function toErrorInfo(thrown: unknown, depth = 0): ErrorInfo {
  if (!(thrown instanceof Error)) {
    return { name: 'NonErrorThrown', message: describe(thrown) };
  }
  const info: ErrorInfo = { name: thrown.name, message: thrown.message };
  if (thrown.stack !== undefined) info.stack = thrown.stack;
  const data = ownData(thrown);
  if (data !== undefined) info.data = data;
  if (thrown.cause !== undefined && depth < MAX_CAUSE_DEPTH) info.cause = toErrorInfo(thrown.cause, depth + 1);
  return info;
}

/** Rebuilds a client-side error from an `ErrorInfo`, keeping the remote name. */
export function fromErrorInfo(info: ErrorInfo): RemoteTaskError {
  return new RemoteTaskError(info, info.cause ? fromErrorInfo(info.cause) : undefined);
}

function ownData(error: Error): Record<string, unknown> | undefined {
  let data: Record<string, unknown> | undefined;
  for (const key of Object.keys(error)) {
    if (STANDARD_FIELDS.has(key)) continue;
    const value = (error as unknown as Record<string, unknown>)[key];
    if (typeof value === 'function' || value instanceof Error) continue;
    try {
      JSON.stringify(value);
    } catch {
      continue; // not JSON-safe (a cycle, a bigint): leave it out rather than fail the outcome
    }
    (data ??= {})[key] = value;
  }
  return data;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return value;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
