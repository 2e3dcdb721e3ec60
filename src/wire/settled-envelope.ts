/**
 * The message workers of one service tell each other which attempts they
 * settled (see `src/worker/settled-feed.ts`). Versioned like every envelope;
 * a message that does not match is ignored by its readers, never thrown.
 */
import { z } from 'zod';
import { WIRE_VERSION } from './envelopes.js';
import { parseWithSchema } from './parse-json.js';

/** A settled attempt: task id, retry sequence, retry index, isolation step (`SettledAttempts`' order). */
export type SettledAttemptTuple = readonly [taskId: string, retrySequence: number, retryIndex: number, isolationStep: number];

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
});

export function encodeSettled(attempts: readonly SettledAttemptTuple[]): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ v: WIRE_VERSION, kind: 'settled', attempts }));
}

/** The attempts a message names, or why it was not understood (bad JSON, another kind, a field out of bounds). */
export function decodeSettled(payload: Uint8Array): { attempts: readonly SettledAttemptTuple[] } | { problem: string } {
  const parsed = parseWithSchema(payload, settledSchema);
  return 'problem' in parsed ? parsed : { attempts: parsed.value.attempts };
}
