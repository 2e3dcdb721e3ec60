/**
 * The `sheaf.yml` schema: one zod schema that validates the file, fills
 * nothing in (defaults are applied when compiling, see executor-schema.ts),
 * and is exported as JSON Schema for editors (config/sheaf.schema.json).
 */
import { z } from 'zod';
import { NAME_PATTERN } from '../topics.js';
import { executorSettingsShape } from './executor-schema.js';
import { pulsarTuningShape } from '../transport/pulsar/options-schema.js';
import { positiveInt, strictObject } from './issues.js';

/** The most task-topic partitions `sheaf setup` makes (Pulsar's own default limit is 100 per topic on many deployments). */
export const MAX_PARTITIONS = 100;

const name = z
  .string({ error: 'must be a name (a string)' })
  .regex(NAME_PATTERN, { error: 'must start with a letter and hold only letters, digits, "_" and "-" (it becomes part of topic names)' });

const nonEmpty = (what: string) => z.string({ error: `must be ${what}` }).min(1, { error: `must be ${what}` });

/** The most worker processes `sheaf worker --processes` (or `processes:`) runs. */
export const MAX_PROCESSES = 64;

export const pulsarSchema = strictObject({
  brokerServiceUrl: nonEmpty('a URL like pulsar://localhost:6650').describe(
    'pulsar://host:6650, or pulsar+ssl://host:6651 for TLS; several hosts (pulsar://h1:6650,h2:6650) are tried in turn when one cannot be reached',
  ),
  adminUrl: nonEmpty('a URL like http://localhost:8080')
    .optional()
    .describe("the broker's admin REST API (http://host:8080), used by `sheaf setup` to create the tenant and namespace"),
  tenant: nonEmpty('a tenant name').optional().describe('default: public'),
  namespace: nonEmpty('a namespace name').optional().describe('default: default'),
  authentication: strictObject({
    token: nonEmpty('a token').optional().describe('the token itself; prefer ${PULSAR_TOKEN}'),
    tokenFile: nonEmpty('a file path').optional().describe('a file holding the token, read at every (re)connection'),
  })
    .optional()
    .describe('token authentication: token or tokenFile'),
  tls: strictObject({
    caFile: nonEmpty('a file path').optional().describe('PEM file of the CA that signed the broker certificate'),
    certFile: nonEmpty('a file path').optional().describe('client certificate (PEM), for mutual TLS'),
    keyFile: nonEmpty('a file path').optional().describe('client key (PEM), for mutual TLS'),
    rejectUnauthorized: z.boolean({ error: 'must be true or false' }).optional().describe('default: true'),
  }).optional(),
  ...pulsarTuningShape,
});

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export const executorConfigSchema = strictObject({
  module: nonEmpty('a module path').describe('JavaScript module of the service class, relative to this file'),
  export: nonEmpty('an export name').describe('the exported class; it is constructed with no arguments'),
  ...executorSettingsShape,
});

export const sheafConfigSchema = strictObject({
  $schema: z.string().optional(),
  name: name.optional().describe('worker or client name: logs, dead letters, the client result topic'),
  transport: z.enum(['inMemory', 'pulsar'], { error: 'must be inMemory or pulsar' }).optional().describe('default: inMemory'),
  pulsar: pulsarSchema.optional(),
  logs: strictObject({
    level: z
      .enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` })
      .optional()
      .describe('default: info'),
    pretty: z.boolean({ error: 'must be true or false' }).optional().describe('default: true in a terminal, JSON lines otherwise'),
  }).optional(),
  shutdownGraceSeconds: z
    .number({ error: 'must be a number of seconds ≥ 0 (0: wait for ever)' })
    .nonnegative({ error: 'must be a number of seconds ≥ 0 (0: wait for ever)' })
    .optional()
    .describe('how long a worker drains on SIGTERM before it gives up, closes and exits 1 (default 30; 0: wait for ever)'),
  errors: strictObject({
    includeStack: z
      .boolean({ error: 'must be true or false' })
      .optional()
      .describe('keep stacks (file paths, code lines) in dead letters and failure results (default false)'),
  })
    .optional()
    .describe('how task errors are written where others can read them'),
  jobs: strictObject({
    tracker: z
      .boolean({ error: 'must be true or false' })
      .optional()
      .describe('this worker takes part in tracking jobs; one tracker at a time is active (default true)'),
    retentionHours: z
      .number({ error: 'must be a number of hours > 0' })
      .positive({ error: 'must be a number of hours > 0' })
      .optional()
      .describe("how long a finished job's status stays answerable (default 24)"),
  })
    .optional()
    .describe('jobs: many tasks as one unit (docs/jobs.md)'),
  processes: z
    .number({ error: 'must be a whole number of processes' })
    .int({ error: 'must be a whole number of processes' })
    .min(1, { error: 'must be at least 1' })
    .max(MAX_PROCESSES, { error: `must be at most ${MAX_PROCESSES} (one per core is the most that helps)` })
    .optional()
    .describe('worker processes `sheaf worker` runs under one supervisor (default 1); up to one per core; pulsar transport only'),
  metrics: strictObject({
    port: z.number({ error: 'must be a port number' }).int().min(0).max(65535, { error: 'must be a port number (0-65535)' }).optional(),
    host: nonEmpty('a host or address').optional(),
    dashboard: z.boolean({ error: 'must be true or false' }).optional(),
  }).optional(),
  services: z
    .array(
      strictObject({
        name,
        partitions: positiveInt()
          .max(MAX_PARTITIONS, { error: `must be an integer from 1 to ${MAX_PARTITIONS}` })
          .optional()
          .describe(
            'partitions of the task topic, made by `sheaf setup` (Pulsar spreads partitions over brokers); default: one topic, not partitioned',
          ),
        executor: executorConfigSchema.optional().describe('how workers run this service; clients need only the name'),
      }),
      { error: 'must be a list of services' },
    )
    .optional(),
});

export type SheafConfig = z.infer<typeof sheafConfigSchema>;
export type PulsarConfig = z.infer<typeof pulsarSchema>;
export type ExecutorConfig = z.infer<typeof executorConfigSchema>;
