/**
 * The message workers of one service tell each other which attempts they
 * settled (see `src/worker/settled-feed.ts`). Versioned like every envelope;
 * a message that does not match is ignored by its readers, never thrown.
 */
import { z } from 'zod';
import { WIRE_VERSION } from './envelopes.js';
import { parseWithSchema } from './parse-json.js';

/**
 * A settled attempt: task id, retry sequence, retry index, isolation step
 * (`SettledAttempts`' order), and, for a failed attempt, the isolation group
 * of the next attempt its worker published (how two copies of one attempt
 * that ran on two workers at once tell their next attempts apart).
 */
export type SettledAttemptTuple = readonly [
  taskId: string,
  retrySequence: number,
  retryIndex: number,
  isolationStep: number,
  nextGroup?: string,
];

/** Isolation group ids longer than this are not shared (Sheaf's are UUIDs). */
export const MAX_SHARED_GROUP_LENGTH = 64;

/** Task ids longer than this are not shared (nor accepted): they are settled on the worker that ran them only. */
export const MAX_SHARED_TASK_ID_LENGTH = 512;
/** Attempts in one message at most; a writer splits larger sets. */
export const MAX_ATTEMPTS_PER_MESSAGE = 2000;

const count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

const settledSchema = z.object({
  v: z.literal(WIRE_VERSION),
  kind: z.literal('settled'),
  attempts: z
    .array(z.tuple([z.string().min(1).max(MAX_SHARED_TASK_ID_LENGTH), count, count, count]))
    .min(1)
    .max(MAX_ATTEMPTS_PER_MESSAGE),
  /**
   * The next attempts' isolation groups, as [index into attempts, group]: a
   * field of its own, so that workers that know only the four-element
   * attempts still read the message (unknown fields are ignored).
   */
  next: z
    .array(z.tuple([count.max(MAX_ATTEMPTS_PER_MESSAGE - 1), z.string().min(1).max(MAX_SHARED_GROUP_LENGTH)]))
    .max(MAX_ATTEMPTS_PER_MESSAGE)
    .optional(),
});

export function encodeSettled(attempts: readonly SettledAttemptTuple[]): Uint8Array {
  const next: Array<[number, string]> = [];
  const plain = attempts.map(([taskId, retrySequence, retryIndex, isolationStep, nextGroup], i) => {
    if (nextGroup !== undefined) next.push([i, nextGroup]);
    return [taskId, retrySequence, retryIndex, isolationStep];
  });
  return new TextEncoder().encode(
    JSON.stringify({ v: WIRE_VERSION, kind: 'settled', attempts: plain, ...(next.length > 0 ? { next } : {}) }),
  );
}

/** The attempts a message names, or why it was not understood (bad JSON, another kind, a field out of bounds). */
export function decodeSettled(payload: Uint8Array): { attempts: readonly SettledAttemptTuple[] } | { problem: string } {
  const parsed = parseWithSchema(payload, settledSchema);
  if ('problem' in parsed) return parsed;
  const { attempts, next } = parsed.value;
  if (!next) return { attempts };
  const out: SettledAttemptTuple[] = attempts.slice();
  for (const [i, group] of next) {
    const attempt = attempts[i];
    if (!attempt) return { problem: `next: index ${i} names no attempt (${attempts.length} attempts)` };
    out[i] = [...attempt, group];
  }
  return { attempts: out };
}
