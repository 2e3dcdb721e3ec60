/**
 * `new SheafWorker(options)`: the options as users write them, validated once
 * into `CompiledWorkerOptions` that the rest of the worker reads without
 * re-checking. Every problem is reported at once, by path.
 */
import { randomUUID } from 'node:crypto';
import { pino, type Logger } from 'pino';
import { z } from 'zod';
import {
  compileExecutorSettings,
  executorSettingsShape,
  type CompiledExecutorSettings,
  type ExecutorSettings,
} from '../config/executor-schema.js';
import { strictObject, toConfigIssues } from '../config/issues.js';
import { ConfigError, type ConfigIssue } from '../errors.js';
import { NAME_PATTERN } from '../topics.js';
import type { Transport } from '../transport/transport.js';
import { systemClock, type Clock } from '../util/clock.js';

export interface ExecutorOptions extends ExecutorSettings {
  /** Creates the service instance (called once per worker start). */
  factory: () => object | Promise<object>;
}

export interface ServiceOptions {
  /** The service name clients dispatch to (`client.service('EmailService')`). */
  name: string;
  executor: ExecutorOptions;
}

export interface WorkerOptions {
  transport: Transport;
  services: ServiceOptions[];
  /** Shown in logs and dead letters. Default: `worker-` and a random id. */
  name?: string;
  /** A pino logger. Default: pino at level `info`. */
  logger?: Logger;
  /** Time source for batching and retries (tests inject a manual clock). */
  clock?: Clock;
  /** Random source for retry jitter, in [0, 1). */
  random?: () => number;
  /**
   * How long `close()` may drain (run open batches, settle) before it gives
   * up: it then closes what it can and rejects with `ShutdownTimeoutError`;
   * the broker redelivers what was left. Default 30; 0 waits for ever.
   */
  shutdownGraceSeconds?: number;
  /**
   * How task errors are written into dead letters, retries and failure
   * results. `includeStack` (default false) keeps their stacks, which name
   * files and code lines: for development (the demo turns it on).
   */
  errors?: { includeStack?: boolean };
  /**
   * The job tracker (docs/jobs.md). `tracker` (default true): this worker
   * takes part; one worker's tracker at a time is active. `retentionHours`
   * (default 24): how long a finished job's status stays answerable.
   */
  jobs?: { tracker?: boolean; retentionHours?: number };
}

export interface CompiledService extends CompiledExecutorSettings {
  readonly name: string;
  readonly factory: () => object | Promise<object>;
}

export interface CompiledWorkerOptions {
  readonly name: string;
  readonly transport: Transport;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly random: () => number;
  readonly services: readonly CompiledService[];
  /** Infinity: wait for ever. */
  readonly shutdownGraceMs: number;
  readonly errors: { readonly includeStack: boolean };
  readonly jobs: { readonly tracker: boolean; readonly retentionMs: number };
}

export const serviceNameSchema = z
  .string({ error: 'must be a service name (a string)' })
  .regex(NAME_PATTERN, { error: 'must start with a letter and hold only letters, digits, "_" and "-" (it becomes part of topic names)' });

const isFunction = (v: unknown): boolean => typeof v === 'function';

const workerOptionsSchema = strictObject({
  transport: z.custom<Transport>(
    (v) => typeof v === 'object' && v !== null && isFunction((v as Transport).subscribe) && isFunction((v as Transport).createProducer),
    { error: 'must be a transport, e.g. new InMemoryTransport()' },
  ),
  name: serviceNameSchema.optional(),
  logger: z
    .custom<Logger>((v) => typeof v === 'object' && v !== null && isFunction((v as Logger).info), {
      error: 'must be a pino logger',
    })
    .optional(),
  clock: z
    .custom<Clock>((v) => typeof v === 'object' && v !== null && isFunction((v as Clock).now), {
      error: 'must be a Clock',
    })
    .optional(),
  random: z.custom<() => number>(isFunction, { error: 'must be a function returning a number in [0, 1)' }).optional(),
  shutdownGraceSeconds: z
    .number({ error: 'must be a number of seconds ≥ 0 (0: wait for ever)' })
    .nonnegative({ error: 'must be a number of seconds ≥ 0 (0: wait for ever)' })
    .optional(),
  errors: strictObject({ includeStack: z.boolean({ error: 'must be true or false' }).optional() }).optional(),
  jobs: strictObject({
    tracker: z.boolean({ error: 'must be true or false' }).optional(),
    retentionHours: z.number({ error: 'must be a number of hours > 0' }).positive({ error: 'must be a number of hours > 0' }).optional(),
  }).optional(),
  services: z
    .array(
      strictObject({
        name: serviceNameSchema,
        executor: strictObject({
          factory: z.custom<() => object>(isFunction, {
            error: 'must be a function that returns the service instance, e.g. () => new EmailServiceImpl()',
          }),
          ...executorSettingsShape,
        }),
      }),
      { error: 'must be a list of services' },
    )
    .min(1, { error: 'must name at least one service' }),
});

export function compileWorkerOptions(options: WorkerOptions): CompiledWorkerOptions {
  const parsed = workerOptionsSchema.safeParse(options, { reportInput: true });
  if (!parsed.success) throw new ConfigError(toConfigIssues(parsed.error), { source: 'worker options' });
  const issues: ConfigIssue[] = [];
  const seen = new Map<string, number>();
  const services = parsed.data.services.map((service, index): CompiledService => {
    const first = seen.get(service.name);
    if (first !== undefined) {
      issues.push({
        path: `services[${index}].name`,
        message: `duplicates services[${first}].name '${service.name}'; each service is declared once`,
      });
    } else {
      seen.set(service.name, index);
    }
    const { factory, ...settings } = service.executor;
    return { name: service.name, factory, ...compileExecutorSettings(settings, `services[${index}].executor`, issues) };
  });
  if (issues.length > 0) throw new ConfigError(issues, { source: 'worker options' });
  return {
    name: parsed.data.name ?? `worker-${randomUUID().slice(0, 8)}`,
    transport: parsed.data.transport,
    logger: parsed.data.logger ?? pino({ name: 'sheaf', level: 'info' }),
    clock: parsed.data.clock ?? systemClock,
    random: parsed.data.random ?? Math.random,
    services,
    shutdownGraceMs: parsed.data.shutdownGraceSeconds === 0 ? Infinity : (parsed.data.shutdownGraceSeconds ?? 30) * 1000,
    errors: { includeStack: parsed.data.errors?.includeStack ?? false },
    jobs: { tracker: parsed.data.jobs?.tracker ?? true, retentionMs: (parsed.data.jobs?.retentionHours ?? 24) * 3600_000 },
  };
}
