/**
 * Turns schema-validation issues into `ConfigIssue`s: a readable path
 * (`services[0].executor.batch.maxMessages`) and a message that says what is
 * wrong, what was given, and what to write instead.
 */
import { z } from 'zod';
import type { ConfigIssue } from '../errors.js';
import { isSecretKey } from '../util/secrets.js';

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else out += out === '' ? String(segment) : `.${String(segment)}`;
  }
  return out;
}

export function toConfigIssues(error: z.ZodError): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      // One issue per unknown key, at the key's own path: that is where the user must look.
      for (const key of issue.keys) {
        issues.push({ path: formatPath([...issue.path, key]), message: issue.message });
      }
      continue;
    }
    // A secret's value is never shown, nor the secrets inside a value that is.
    const got =
      'input' in issue && issue.code !== 'invalid_union'
        ? ` (got ${issue.path.some(isSecretKey) ? 'a value not shown: it is secret' : show(redacted(issue.input))})`
        : '';
    issues.push({ path: formatPath(issue.path), message: `${issue.message}${got}` });
  }
  return issues;
}

/**
 * An object schema that rejects unknown keys, naming the allowed ones and the
 * closest match for a misspelling.
 */
export function strictObject<Shape extends z.ZodRawShape>(shape: Shape) {
  const allowed = Object.keys(shape);
  return z.strictObject(shape, {
    error: (issue) => {
      if (issue.code !== 'unrecognized_keys') return undefined;
      const key = issue.keys[0] ?? '';
      const close = closest(key, allowed);
      return `unknown key${close ? `; did you mean '${close}'?` : ''} (allowed here: ${allowed.join(', ')})`;
    },
  });
}

export const positiveInt = () =>
  z
    .number({ error: 'must be a positive integer' })
    .int({ error: 'must be a positive integer' })
    .positive({ error: 'must be a positive integer' });

export const positiveNumber = () =>
  z
    .number({ error: 'must be a positive number' })
    .positive({ error: 'must be a positive number' })
    .finite({ error: 'must be a positive number' });

export const nonNegativeNumber = () =>
  z.number({ error: 'must be a number ≥ 0' }).nonnegative({ error: 'must be a number ≥ 0' }).finite({ error: 'must be a number ≥ 0' });

/** A copy of `value` with the values of secret keys replaced, at any depth. */
function redacted(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== 'object' || depth > 8) return value;
  if (Array.isArray(value)) return value.map((item) => redacted(item, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) out[key] = isSecretKey(key) ? '[redacted]' : redacted(item, depth + 1);
  return out;
}

function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'function') return 'a function';
  try {
    const text = JSON.stringify(value);
    return text.length > 60 ? `${text.slice(0, 57)}...` : text;
  } catch {
    return String(value);
  }
}

/** The allowed key nearest to `key` by edit distance, if it is plausibly a typo. */
function closest(key: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1;
  for (const candidate of allowed) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length]!;
}
