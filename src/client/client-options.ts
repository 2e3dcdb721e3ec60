/**
 * What a `SheafClient` is given, checked once: the client's options, a
 * service stub's and a dispatch's (with the fast path for the options most
 * dispatches pass). Errors name the key and say what it must be.
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import { strictObject, toConfigIssues } from '../config/issues.js';
import { ConfigError } from '../errors.js';
import { NAME_PATTERN } from '../topics.js';
import type { Transport } from '../transport/transport.js';
import type { DispatchOptions } from './task-handle.js';

/** What `SheafClient.connect()` takes; checked once (`clientOptionsSchema`). */
export interface ClientOptions {
  transport: Transport;
  /** Names the client's result topic; keep it stable to find results after a restart. Default: random. */
  name?: string;
  logger?: Logger;
  /** How many results the client may hold unacknowledged. Default 1000. */
  maxUnackedResults?: number;
  /**
   * How long `await stub.method()` and `handle.result()` wait for a result
   * before rejecting with `ResultTimeoutError`. Default 3600 (longer than the
   * default retry schedule); 0 waits for ever. The task is not cancelled.
   */
  defaultResultTimeoutSeconds?: number;
  /**
   * How long a dispatch waits for the broker to take the task
   * (`SendTimeoutError`). Default: the transport's own bound (Pulsar's
   * `producer.sendTimeoutSeconds`, 60), or 60 for a transport without one.
   */
  sendTimeoutSeconds?: number;
  /**
   * Keep the result subscription (and results not yet received) when the
   * client closes, for a later client of the same `name`. Default: true when
   * `name` is given, false for a generated name, whose subscription is
   * deleted on close so that nothing of the client stays on the broker.
   */
  keepResultsOnClose?: boolean;
}

/** What `client.service(name, options)` takes: metadata and tags for every task of the stub. */
export interface ServiceStubOptions {
  /** Task metadata; `meta.batchKey` groups tasks into batches. */
  meta?: Record<string, string>;
  tags?: string[];
}

/** `ClientOptions` as a schema: its errors name the key and what it must be. */
export const clientOptionsSchema = strictObject({
  transport: z.custom<Transport>((v) => typeof v === 'object' && v !== null && typeof (v as Transport).subscribe === 'function', {
    error: 'must be a transport, e.g. new InMemoryTransport()',
  }),
  name: z.string().regex(NAME_PATTERN, { error: 'must start with a letter and hold only letters, digits, "_" and "-"' }).optional(),
  logger: z
    .custom<Logger>((v) => typeof v === 'object' && v !== null && typeof (v as Logger).info === 'function', {
      error: 'must be a pino logger',
    })
    .optional(),
  maxUnackedResults: z.number().int().positive({ error: 'must be a positive integer' }).optional(),
  defaultResultTimeoutSeconds: z.number().nonnegative({ error: 'must be a number of seconds ≥ 0 (0: wait for ever)' }).optional(),
  sendTimeoutSeconds: z.number().positive({ error: 'must be a positive number of seconds' }).optional(),
  keepResultsOnClose: z.boolean({ error: 'must be true or false' }).optional(),
});

const dispatchOptionsSchema = strictObject({
  batchKey: z.string({ error: 'must be a string' }).optional(),
  meta: z.record(z.string(), z.string({ error: 'must be a string (meta values travel as strings)' })).optional(),
  tags: z.array(z.string({ error: 'must be a string' })).optional(),
  fireAndForget: z.boolean({ error: 'must be true or false' }).optional(),
});

/** A dispatch's options checked by the schema; `ConfigError` naming the key otherwise. */
export function parseDispatchOptions(options: unknown): DispatchOptions {
  const parsed = dispatchOptionsSchema.safeParse(options, { reportInput: true });
  if (!parsed.success) throw new ConfigError(toConfigIssues(parsed.error), { source: 'client.dispatch() options' });
  return parsed.data;
}

/**
 * The options most dispatches pass (`{ batchKey }`, `{ fireAndForget }`),
 * recognised without zod: `dispatch` runs once per task when each call sets
 * its own batch key. Anything else goes through the schema and its errors.
 */
export function plainDispatchOptions(options: unknown): options is DispatchOptions {
  if (options === null || typeof options !== 'object' || Object.getPrototypeOf(options) !== Object.prototype) return false;
  const o = options as Record<string, unknown>;
  for (const key in o) {
    const value = o[key];
    if (value === undefined) continue;
    if (key === 'batchKey' ? typeof value !== 'string' : key === 'fireAndForget' ? typeof value !== 'boolean' : true) return false;
  }
  return true;
}

/** `ServiceStubOptions` as a schema. */
export const stubOptionsSchema = strictObject({
  meta: z.record(z.string(), z.string({ error: 'must be a string (meta values travel as strings)' })).optional(),
  tags: z.array(z.string({ error: 'must be a string' })).optional(),
});
