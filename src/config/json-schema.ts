/**
 * The JSON Schema shipped for editors (config/sheaf.schema.json), generated
 * from the zod schema and completed here:
 * - every property gets a description and, where there is one, its default
 *   (the zod schema fills in nothing, so defaults are documentation here and
 *   applied when options are compiled);
 * - every scalar also accepts a `${VAR}` / `${VAR:-default}` string, since
 *   the file is interpolated before it is validated.
 */
import { z } from 'zod';
import { EXECUTOR_DEFAULTS } from './executor-schema.js';
import { sheafConfigSchema } from './schema.js';

interface PropertyDoc {
  readonly description: string;
  readonly default?: unknown;
}

/** Descriptions and defaults by property path (`[]` for list items). */
export const PROPERTY_DOCS: Readonly<Record<string, PropertyDoc>> = {
  $schema: { description: 'the JSON Schema this file follows, for editors' },
  name: { description: 'worker or client name: logs, dead letters, the client result topic' },
  transport: { description: 'inMemory (one process) or pulsar', default: 'inMemory' },
  pulsar: { description: 'the Pulsar broker and client settings (transport: pulsar)' },
  'pulsar.tenant': { description: 'the tenant of every Sheaf topic', default: 'public' },
  'pulsar.namespace': { description: 'the namespace of every Sheaf topic', default: 'default' },
  'pulsar.tls': { description: 'TLS settings, with pulsar+ssl://' },
  'pulsar.tls.rejectUnauthorized': { description: 'refuse a broker whose certificate the CA does not vouch for', default: true },
  'pulsar.connectThroughServiceUrl': {
    description: 'send every connection to brokerServiceUrl (one broker behind port mapping, as in Docker)',
    default: false,
  },
  'pulsar.connectTimeoutSeconds': { description: 'bound on a TCP/TLS connect and the CONNECT handshake', default: 10 },
  'pulsar.operationTimeoutSeconds': { description: 'bound on each request to the broker (lookup, subscribe, ...)', default: 30 },
  'pulsar.keepAliveIntervalSeconds': {
    description: 'PING interval; a broker silent for two intervals is dropped and reconnected',
    default: 30,
  },
  'pulsar.nackRedeliveryDelayMs': { description: 'delay before a message handed back is redelivered', default: 1000 },
  'pulsar.producer': { description: 'producer settings (tasks, retries, results, dead letters)' },
  'pulsar.producer.maxPendingMessages': { description: 'unconfirmed sends per partition; a send waits for room beyond it', default: 1000 },
  'pulsar.producer.batchingMaxMessages': {
    description: 'messages per batch entry (one entry per key, so Key_Shared routing stays right); 1 turns batching off',
    default: 1000,
  },
  'pulsar.producer.batchingMaxDelayMs': { description: 'how long a partial batch waits', default: 1 },
  'pulsar.producer.batchingMaxBytes': { description: 'bytes per batch entry (never above the broker maxMessageSize)', default: 131072 },
  'pulsar.producer.compression': { description: 'payload compression: none, lz4, zlib, zstd or snappy', default: 'none' },
  'pulsar.producer.chunking': {
    description: "split messages over the broker's maxMessageSize into chunks (off: such a send fails with MessageTooLargeError)",
    default: false,
  },
  'pulsar.producer.chunkMaxMessageSize': { description: "largest chunk in bytes (default: the broker's maxMessageSize)" },
  'pulsar.producer.sendTimeoutSeconds': {
    description: 'a send not confirmed by then fails with SendTimeoutError; 0 waits for ever',
    default: 60,
  },
  'pulsar.producer.routingMode': {
    description: 'partition of a message without a key: roundRobin or singlePartition',
    default: 'roundRobin',
  },
  'pulsar.producer.hashingScheme': {
    description: 'partition of a keyed message: javaStringHash or murmur3_32Hash',
    default: 'javaStringHash',
  },
  'pulsar.consumer': { description: 'consumer settings' },
  'pulsar.consumer.batchIndexAck': {
    description: "ack each message of a batch entry at once (needs the broker's acknowledgmentAtBatchIndexLevelEnabled)",
    default: false,
  },
  'pulsar.consumer.maxPendingChunkedMessages': {
    description: 'chunked messages reassembled at once; past it the oldest is given up',
    default: 10,
  },
  'pulsar.consumer.expireIncompleteChunkedMessageSeconds': {
    description: 'an incomplete chunked message is given up after this long',
    default: 60,
  },
  'pulsar.consumer.maxChunkedMessageBytes': { description: 'the largest chunked message reassembled', default: 67108864 },
  logs: { description: 'logging' },
  shutdownGraceSeconds: {
    description:
      'how long a worker drains on SIGTERM (open batches run and settle) before it closes what it can and exits 1; 0 waits for ever',
    default: 30,
  },
  jobs: { description: 'jobs: many tasks as one unit, followed by a job tracker inside the workers (docs/jobs.md)' },
  'jobs.tracker': { description: 'this worker takes part in tracking jobs; one tracker at a time is active', default: true },
  'jobs.retentionHours': { description: "how long a finished job's status stays answerable", default: 24 },
  processes: {
    description: 'worker processes `sheaf worker` runs under one supervisor, each with its own consumers (pulsar transport only)',
    default: 1,
  },
  metrics: { description: "the worker's operations port: Prometheus /metrics, /healthz, /readyz and the dashboard" },
  'metrics.port': { description: 'serve /metrics, /healthz and /readyz on this port (sheaf worker --metrics-port overrides it)' },
  'metrics.host': { description: 'the address to listen on', default: '0.0.0.0' },
  'metrics.dashboard': { description: 'also serve the live dashboard at /dashboard', default: false },
  services: { description: 'the services: a name for clients, and an executor for workers' },
  'services[]': { description: 'one service' },
  'services[].name': { description: 'the service name, as clients call it (part of its topic names)' },
  'services[].executor.concurrency': { description: 'batches (or single tasks) running at once', default: EXECUTOR_DEFAULTS.concurrency },
  'services[].executor.maxConcurrencyPerKey': {
    description:
      'executions of one batch key at once (default: concurrency − 1, at least 1), so a hung or slow key leaves the others a slot',
  },
  'services[].executor.settledCache': {
    description: 'attempts settled recently, remembered so that a second copy of one is acked without running again',
  },
  'services[].executor.settledCache.maxTasks': {
    description: 'task ids remembered at most (about 210 bytes each, the id included)',
    default: 100000,
  },
  'services[].executor.settledCache.maxSeconds': { description: 'how long an attempt is remembered', default: 600 },
  'services[].executor.settledCache.shared': {
    description:
      "workers of the service announce the attempts they settle on its sheaf-settled- topic and remember each other's, so a copy the broker hands to another worker (after it lost acks) is not run again",
    default: true,
  },
  'services[].executor.isolation': {
    description:
      'a batch that failed as a whole (threw, timed out): bisect retries it as two halves apart from other tasks, recursively, until the failing task stands alone; single retries each task alone; none retries each task on its own schedule with any others. Isolation retries use no retry',
    default: EXECUTOR_DEFAULTS.isolation,
  },
  'services[].executor.timeoutSeconds': {
    description: 'bound on one execution (a whole batch)',
    default: EXECUTOR_DEFAULTS.timeoutSeconds,
  },
  'services[].executor.maxUnacked': {
    description: 'tasks held at once, received and not settled (default: 2 × concurrency × batch.maxMessages)',
  },
  'services[].executor.batch': { description: 'when a batch is flushed' },
  'services[].executor.batch.maxMessages': { description: 'flush at this many tasks', default: EXECUTOR_DEFAULTS.batch.maxMessages },
  'services[].executor.batch.maxSeconds': {
    description: 'flush this long after the first task arrived',
    default: EXECUTOR_DEFAULTS.batch.maxSeconds,
  },
  'services[].executor.batch.maxBytes': { description: 'flush before the next task would pass this many bytes (default: no limit)' },
  'services[].executor.retry': { description: "each task's retry policy (Infinitic's names and defaults)" },
  'services[].executor.retry.minimumSeconds': {
    description: 'delay before the first retry',
    default: EXECUTOR_DEFAULTS.retry.minimumSeconds,
  },
  'services[].executor.retry.maximumSeconds': { description: 'the longest delay (default: 1000 × minimumSeconds)' },
  'services[].executor.retry.backoffCoefficient': {
    description: 'each delay is the previous one times this',
    default: EXECUTOR_DEFAULTS.retry.backoffCoefficient,
  },
  'services[].executor.retry.randomFactor': {
    description: 'jitter: ± this share of each delay',
    default: EXECUTOR_DEFAULTS.retry.randomFactor,
  },
  'services[].executor.retry.maximumRetries': {
    description: 'retries before a task fails for good',
    default: EXECUTOR_DEFAULTS.retry.maximumRetries,
  },
  'services[].executor.retry.ignoredErrors': { description: 'error names that are never retried', default: [] },
};

/** `${VAR}` or `${VAR:-default}`, alone: what interpolation replaces before validation. */
const INTERPOLATION = { type: 'string', pattern: '^\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\\}$', description: 'an environment variable' };

type Node = Record<string, unknown> & { properties?: Record<string, Node>; items?: Node; anyOf?: Node[]; type?: unknown };

/** The JSON Schema shipped for editors. */
export function sheafJsonSchema(): unknown {
  const generated = z.toJSONSchema(sheafConfigSchema, { target: 'draft-7', io: 'input' }) as Node;
  complete(generated, '');
  return { ...generated, title: 'Sheaf configuration (sheaf.yml)' };
}

function complete(node: Node, path: string): void {
  for (const [key, child] of Object.entries(node.properties ?? {})) {
    const at = path ? `${path}.${key}` : key;
    const doc = PROPERTY_DOCS[at];
    if (doc && child.description === undefined) child.description = doc.description;
    if (doc?.default !== undefined) child.default = doc.default;
    complete(child, at);
    if (child.items) {
      const itemDoc = PROPERTY_DOCS[`${at}[]`];
      if (itemDoc && child.items.description === undefined) child.items.description = itemDoc.description;
      complete(child.items, `${at}[]`);
    }
    if (isScalar(child)) node.properties![key] = { ...pick(child, 'description', 'default'), anyOf: [strip(child), INTERPOLATION] };
  }
}

function isScalar(node: Node): boolean {
  const type = node.type;
  return (
    (type === 'string' || type === 'number' || type === 'integer' || type === 'boolean' || Array.isArray(node.enum)) && !node.properties
  );
}

function pick(node: Node, ...keys: string[]): Node {
  return Object.fromEntries(keys.filter((k) => node[k] !== undefined).map((k) => [k, node[k]])) as Node;
}

function strip(node: Node): Node {
  const { description: _d, default: _f, ...rest } = node;
  return rest as Node;
}
