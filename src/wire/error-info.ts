import { z } from 'zod';
import { RemoteTaskError, SheafError } from '../errors.js';

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

type Replacement = string | ((match: string, ...groups: string[]) => string);

/** A quoted value keeps its quotes: `"[redacted]"`, so JSON stays JSON. */
const keepQuotes = (_match: string, key: string, separator: string, value: string): string =>
  `${key}${separator}${value.startsWith('"') ? '"[redacted]"' : value.startsWith("'") ? "'[redacted]'" : '[redacted]'}`;

const SECRET_PATTERNS: ReadonlyArray<[RegExp, Replacement]> = [
  // Authorization header values.
  [/\b(Bearer|Basic|Token)(\s+)[A-Za-z0-9._~+/=-]{8,}/gi, '$1$2[redacted]'],
  // JSON Web Tokens (header.payload.signature, base64url).
  [/\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g, '[redacted jwt]'],
  // password=..., apiKey: ..., "token": "..."
  [
    /\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|client[_-]?secret|authorization)("?\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s&,;"']+)/gi,
    keepQuotes,
  ],
  // URL userinfo: scheme://user:password@host
  [/\b([a-z][a-z0-9+.-]*:\/\/)[^/\s:@]+(:[^/\s@]*)?@/gi, '$1[redacted]@'],
];

/** `text` with what looks like a credential replaced by `[redacted]` (docs/security.md lists the patterns). */
export function redactSecrets(text: string): string {
  let out = text;
  for (const [pattern, replacement] of SECRET_PATTERNS) out = out.replace(pattern, replacement as (m: string, ...g: string[]) => string);
  return out;
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

const SECRET_KEY = /token|password|passwd|secret|credential|api[_-]?key|authorization|cookie|private/i;

function redactValue(key: string, value: unknown): unknown {
  if (key !== '' && SECRET_KEY.test(key)) return '[redacted]';
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
