/**
 * The executor settings of one service: the part shared by the YAML config
 * (`services[].executor`) and by `new SheafWorker({ services })` in code.
 * Every default lives here, and `docs`/README quote this table:
 *
 *   key                        default
 *   concurrency                1
 *   maxConcurrencyPerKey       concurrency − 1 (1 when concurrency is 1)
 *   timeoutSeconds             60
 *   batch.maxMessages          100
 *   batch.maxSeconds           1
 *   batch.maxBytes             none (no byte limit)
 *   maxUnacked                 2 × concurrency × batch.maxMessages
 *   retry.minimumSeconds       1
 *   retry.maximumSeconds       1000 × minimumSeconds
 *   retry.backoffCoefficient   2
 *   retry.randomFactor         0.5
 *   retry.maximumRetries       11
 *   retry.ignoredErrors        []
 *   settledCache.maxTasks      100000
 *   settledCache.maxSeconds    600
 *   settledCache.shared        true
 *   isolation                  bisect
 */
import { z } from 'zod';
import type { ConfigIssue } from '../errors.js';
import type { BatchLimits } from '../worker/batch-buffer.js';
import type { RetryOptions } from '../worker/retry-policy.js';
import { nonNegativeNumber, positiveInt, positiveNumber, strictObject } from './issues.js';

export const EXECUTOR_DEFAULTS = {
  concurrency: 1,
  timeoutSeconds: 60,
  batch: { maxMessages: 100, maxSeconds: 1 },
  retry: { minimumSeconds: 1, backoffCoefficient: 2, randomFactor: 0.5, maximumRetries: 11 },
  /** maxUnacked = this × concurrency × maxMessages: one batch running and one filling per slot. */
  unackedPerSlot: 2,
  settledCache: { maxTasks: 100_000, maxSeconds: 600, shared: true },
  isolation: 'bisect',
} as const;

/**
 * What happens to the tasks of a batch that failed as a whole (threw, timed
 * out, broke its contract), so that one poison task does not fail innocent ones:
 * - `bisect`: retried as two halves, each batched only with its own half,
 *   recursively, until a task that fails alone is found (the poison);
 * - `single`: each task retried alone at once;
 * - `none`: each task retried on its own schedule, batched with any others.
 */
export const ISOLATION_MODES = ['bisect', 'single', 'none'] as const;
/** See `ISOLATION_MODES`. */
export type IsolationMode = (typeof ISOLATION_MODES)[number];

export const batchSchema = strictObject({
  maxMessages: positiveInt().optional(),
  maxSeconds: positiveNumber().optional(),
  maxBytes: positiveInt().optional(),
});

export const retrySchema = strictObject({
  minimumSeconds: positiveNumber().optional(),
  maximumSeconds: positiveNumber().optional(),
  backoffCoefficient: z.number({ error: 'must be a number ≥ 1' }).min(1, { error: 'must be a number ≥ 1' }).optional(),
  randomFactor: nonNegativeNumber().max(1, { error: 'must be between 0 and 1' }).optional(),
  maximumRetries: z
    .number({ error: 'must be an integer ≥ 0' })
    .int({ error: 'must be an integer ≥ 0' })
    .nonnegative({ error: 'must be an integer ≥ 0' })
    .optional(),
  ignoredErrors: z.array(z.string({ error: 'must be an error name (a string)' }), { error: 'must be a list of error names' }).optional(),
});

export const settledCacheSchema = strictObject({
  maxTasks: positiveInt().optional(),
  maxSeconds: positiveNumber().optional(),
  shared: z.boolean({ error: 'must be true or false' }).optional(),
});

/** Executor keys other than how the service instance is obtained (factory, or module/export). */
export const executorSettingsShape = {
  concurrency: positiveInt().optional(),
  maxConcurrencyPerKey: positiveInt().optional(),
  timeoutSeconds: positiveNumber().optional(),
  maxUnacked: positiveInt().optional(),
  batch: batchSchema.optional(),
  retry: retrySchema.optional(),
  settledCache: settledCacheSchema.optional(),
  isolation: z.enum(ISOLATION_MODES, { error: 'must be bisect, single or none' }).optional(),
};

export type ExecutorSettings = {
  concurrency?: number | undefined;
  maxConcurrencyPerKey?: number | undefined;
  timeoutSeconds?: number | undefined;
  maxUnacked?: number | undefined;
  batch?: z.infer<typeof batchSchema> | undefined;
  retry?: z.infer<typeof retrySchema> | undefined;
  settledCache?: z.infer<typeof settledCacheSchema> | undefined;
  /** What happens to the tasks of a batch that failed as a whole (default `bisect`; see `ISOLATION_MODES`). */
  isolation?: IsolationMode | undefined;
};

export interface CompiledExecutorSettings {
  readonly concurrency: number;
  /** Executions of one batch key at once; below `concurrency`, so one key cannot take every slot. */
  readonly maxConcurrencyPerKey: number;
  readonly timeoutMs: number;
  readonly maxUnacked: number;
  readonly batch: BatchLimits;
  readonly retry: RetryOptions;
  /** Recently settled attempts remembered to drop their twins; `shared`: also those the service's other workers settled. */
  readonly settledCache: { readonly maxTasks: number; readonly maxAgeMs: number; readonly shared: boolean };
  readonly isolation: IsolationMode;
}

/**
 * Applies defaults and the checks that span several keys. `path` is where the
 * executor block sits, for the issues' paths.
 */
export function compileExecutorSettings(settings: ExecutorSettings, path: string, issues: ConfigIssue[]): CompiledExecutorSettings {
  const concurrency = settings.concurrency ?? EXECUTOR_DEFAULTS.concurrency;
  const maxMessages = settings.batch?.maxMessages ?? EXECUTOR_DEFAULTS.batch.maxMessages;
  const inFlight = concurrency * maxMessages;
  const maxUnacked = settings.maxUnacked ?? EXECUTOR_DEFAULTS.unackedPerSlot * inFlight;
  if (maxUnacked < inFlight) {
    issues.push({
      path: `${path}.maxUnacked`,
      message:
        `must be at least concurrency × batch.maxMessages = ${concurrency} × ${maxMessages} = ${inFlight} (got ${maxUnacked}); ` +
        'otherwise batches can never fill. Raise maxUnacked, or lower concurrency or batch.maxMessages',
    });
  }
  // A hung or slow key must leave other keys a slot: one fewer than all, by default.
  const maxConcurrencyPerKey = settings.maxConcurrencyPerKey ?? Math.max(1, concurrency - 1);
  if (maxConcurrencyPerKey > concurrency) {
    issues.push({
      path: `${path}.maxConcurrencyPerKey`,
      message: `must be at most concurrency (${concurrency}) (got ${maxConcurrencyPerKey}); raise concurrency, or lower maxConcurrencyPerKey`,
    });
  }
  const minimumSeconds = settings.retry?.minimumSeconds ?? EXECUTOR_DEFAULTS.retry.minimumSeconds;
  const maximumSeconds = settings.retry?.maximumSeconds ?? 1000 * minimumSeconds;
  if (maximumSeconds < minimumSeconds) {
    issues.push({
      path: `${path}.retry.maximumSeconds`,
      message: `must be at least retry.minimumSeconds (${minimumSeconds}) (got ${maximumSeconds})`,
    });
  }
  return {
    concurrency,
    maxConcurrencyPerKey,
    timeoutMs: (settings.timeoutSeconds ?? EXECUTOR_DEFAULTS.timeoutSeconds) * 1000,
    maxUnacked,
    batch: {
      maxMessages,
      maxSeconds: settings.batch?.maxSeconds ?? EXECUTOR_DEFAULTS.batch.maxSeconds,
      maxBytes: settings.batch?.maxBytes,
    },
    retry: {
      minimumSeconds,
      maximumSeconds,
      backoffCoefficient: settings.retry?.backoffCoefficient ?? EXECUTOR_DEFAULTS.retry.backoffCoefficient,
      randomFactor: settings.retry?.randomFactor ?? EXECUTOR_DEFAULTS.retry.randomFactor,
      maximumRetries: settings.retry?.maximumRetries ?? EXECUTOR_DEFAULTS.retry.maximumRetries,
      ignoredErrors: settings.retry?.ignoredErrors ?? [],
    },
    settledCache: {
      maxTasks: settings.settledCache?.maxTasks ?? EXECUTOR_DEFAULTS.settledCache.maxTasks,
      maxAgeMs: (settings.settledCache?.maxSeconds ?? EXECUTOR_DEFAULTS.settledCache.maxSeconds) * 1000,
      shared: settings.settledCache?.shared ?? EXECUTOR_DEFAULTS.settledCache.shared,
    },
    isolation: settings.isolation ?? EXECUTOR_DEFAULTS.isolation,
  };
}

/**
 * The settings that compile to `compiled` again: how a config file's executor,
 * checked and compiled when the file loads, is handed to a worker (which
 * compiles its options itself). Every compiled key must appear here.
 */
export function executorSettingsOf(compiled: CompiledExecutorSettings): ExecutorSettings {
  return {
    concurrency: compiled.concurrency,
    maxConcurrencyPerKey: compiled.maxConcurrencyPerKey,
    timeoutSeconds: compiled.timeoutMs / 1000,
    maxUnacked: compiled.maxUnacked,
    batch: {
      maxMessages: compiled.batch.maxMessages,
      maxSeconds: compiled.batch.maxSeconds,
      ...(compiled.batch.maxBytes !== undefined ? { maxBytes: compiled.batch.maxBytes } : {}),
    },
    retry: { ...compiled.retry, ignoredErrors: [...compiled.retry.ignoredErrors] },
    settledCache: {
      maxTasks: compiled.settledCache.maxTasks,
      maxSeconds: compiled.settledCache.maxAgeMs / 1000,
      shared: compiled.settledCache.shared,
    },
    isolation: compiled.isolation,
  };
}
