import { z } from 'zod';
import { RemoteTaskError, SheafError } from '../errors.js';
import { isSecretKey, redactSecrets } from '../util/secrets.js';

/** An error as it travels between worker and client. */
export interface ErrorInfo {
  name: string;
  message: string;
  stack?: string | undefined;
  /** `{ code?, details? }`: the error's `code` and a Sheaf error's `details`, when it has them. */
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

/** How errors are written for dead letters, failure results and retries. */
export interface ErrorInfoOptions {
  /** Keep the stack (file paths and code lines). Default false; the demo turns it on. */
  readonly includeStack?: boolean;
}

/**
 * Describes anything thrown (an Error or not) as an `ErrorInfo`, by an
 * allowlist: its name, message, `code` (a string or number), the `details`
 * of a Sheaf error, and its cause by the same rule; its stack only with
 * `includeStack`. Every other own property (a request with its headers, a
 * connection string) stays in the worker. Strings that look like
 * credentials are redacted in what is kept (`redactSecrets`).
 */
export function toErrorInfo(thrown: unknown, options: ErrorInfoOptions = {}, depth = 0): ErrorInfo {
  if (!(thrown instanceof Error)) {
    return { name: 'NonErrorThrown', message: redactSecrets(describe(thrown)) };
  }
  const info: ErrorInfo = { name: redactSecrets(String(thrown.name)), message: redactSecrets(String(thrown.message)) };
  if (options.includeStack && thrown.stack !== undefined) info.stack = redactSecrets(thrown.stack);
  const data = keptData(thrown);
  if (data !== undefined) info.data = data;
  if (thrown.cause !== undefined && depth < MAX_CAUSE_DEPTH) info.cause = toErrorInfo(thrown.cause, options, depth + 1);
  return info;
}

/** Rebuilds a client-side error from an `ErrorInfo`, keeping the remote name. */
export function fromErrorInfo(info: ErrorInfo): RemoteTaskError {
  return new RemoteTaskError(info, info.cause ? fromErrorInfo(info.cause) : undefined);
}

/** `code` (a string or number) and a Sheaf error's `details`: the only own data that leaves the worker. */
function keptData(error: Error): Record<string, unknown> | undefined {
  let data: Record<string, unknown> | undefined;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' || typeof code === 'number') (data ??= {}).code = typeof code === 'string' ? redactSecrets(code) : code;
  const details = error instanceof SheafError ? error.details : undefined;
  if (details !== undefined) {
    try {
      (data ??= {}).details = JSON.parse(JSON.stringify(details, (key, value: unknown) => redactValue(key, value))) as unknown;
    } catch {
      // not JSON-safe (a cycle, a bigint): left out rather than fail the outcome
    }
  }
  return data;
}

function redactValue(key: string, value: unknown): unknown {
  if (key !== '' && isSecretKey(key)) return '[redacted]';
  return typeof value === 'string' ? redactSecrets(value) : value;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return value;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
