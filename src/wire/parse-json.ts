/**
 * Reading a small JSON message through a schema, for the messages whose
 * readers skip what they cannot read (settled attempts, job events): the
 * value, or one line saying why not.
 */
import type { z } from 'zod';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The payload as `schema` reads it, or the first problem: not UTF-8 JSON, or a field and what is wrong with it. */
export function parseWithSchema<T>(
  payload: Uint8Array,
  schema: z.ZodType<T>,
  /** A check of the commonest shape without the schema's copies (it runs per message): the value when it passes. */
  shortcut?: (raw: unknown) => T | null,
): { value: T } | { problem: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(utf8.decode(payload));
  } catch (error) {
    return { problem: `not JSON: ${(error as Error).message.slice(0, 120)}` };
  }
  const quick = shortcut?.(raw);
  if (quick) return { value: quick };
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { problem: `${issue?.path.join('.') || 'message'}: ${issue?.message ?? 'invalid'}` };
  }
  return { value: parsed.data };
}
