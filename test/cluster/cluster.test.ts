/**
 * Against a real two-broker cluster (scripts/pulsar-cluster.sh; issue 16):
 * lookups that redirect to the other broker, a partitioned task topic whose
 * partitions two brokers own, a multi-host service URL whose first host is
 * gone, unloads, and a broker killed -9 (last: it restarts that broker). SHEAF_PULSAR_CLUSTER=1 says the cluster runs; without it these
 * tests are skipped, unless SHEAF_REQUIRE_PULSAR_CLUSTER=1 (CI) makes that a
 * failure.
 */
import 'reflect-metadata';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { taskTopic } from '../../src/topics.js';
import { PulsarTransport } from '../../src/transport/pulsar/pulsar-transport.js';
import { testLogger } from '../support/logger.js';
import { adminAt, deleteNamespace } from '../support/pulsar.js';
import { Counter, countingEcho, startSystem } from '../support/system.js';

const running = process.env.SHEAF_PULSAR_CLUSTER === '1';
if (!running && process.env.SHEAF_REQUIRE_PULSAR_CLUSTER === '1') {
  throw new Error('SHEAF_REQUIRE_PULSAR_CLUSTER=1 but SHEAF_PULSAR_CLUSTER is not 1: start scripts/pulsar-cluster.sh');
}

const BROKERS = ['pulsar://127.0.0.1:6680', 'pulsar://127.0.0.1:6681'];
/** Both brokers in one multi-host service URL. */
const BOTH_BROKERS = `pulsar://${BROKERS.map((url) => url.replace('pulsar://', '')).join(',')}`;
/** Each broker's name in scripts/pulsar-cluster.sh and its admin URL, by service URL. */
const BROKER_NAMES: Record<string, { name: 'a' | 'b'; web: string }> = {
  'pulsar://127.0.0.1:6680': { name: 'a', web: 'http://127.0.0.1:8180' },
  'pulsar://127.0.0.1:6681': { name: 'b', web: 'http://127.0.0.1:8181' },
};
/** The admin URL the tests call: broker a's, until a test kills a. */
let web = 'http://127.0.0.1:8180';
const clusterScript = new URL('../../scripts/pulsar-cluster.sh', import.meta.url).pathname;
const cluster = (...args: string[]) => promisify(execFile)('bash', [clusterScript, ...args], { timeout: 300_000 });

interface Echo {
  echo(value: string): Promise<string>;
}

const admin = adminAt(() => web);

/** `work`, or after `ms` an error saying what `explain` finds: a stuck run fails with where it stopped. */
async function whileExplained<T>(work: Promise<T>, ms: number, explain: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_resolve, reject) => (timer = setTimeout(() => reject(new Error(explain())), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

describe.skipIf(!running)('a two-broker cluster', () => {
  const namespace = `cluster-${randomUUID().slice(0, 8)}`;
  beforeAll(async () => {
    await admin('PUT', `namespaces/public/${namespace}`);
  });
  afterAll(async () => {
    await deleteNamespace(namespace, admin);
  });

  const transport = (brokerServiceUrl: string) =>
    new PulsarTransport({ brokerServiceUrl, namespace, logger: testLogger, nackRedeliveryDelayMs: 100 });

  /** A worker and a client of one counting echo service (4 slots, batches of up to 100) through `brokerServiceUrl`. */
  const countingSystem = (service: string, executions: Counter, brokerServiceUrl: string) =>
    startSystem(
      [
        {
          name: service,
          executor: { factory: () => new (countingEcho(executions))(), concurrency: 4, batch: { maxMessages: 100, maxSeconds: 0.05 } },
        },
      ],
      transport(brokerServiceUrl),
    );

  test('a task topic of 6 partitions, reached through the broker that does not own its first: every task answered once', async () => {
    await admin('PUT', `persistent/public/${namespace}/${taskTopic('Echo')}/partitions`, 6);
    const owners: string[] = [];
    for (let i = 0; i < 6; i++) {
      const answer = (await admin('GET', `lookup/v2/topic/persistent/public/${namespace}/${taskTopic('Echo')}-partition-${i}`)) as {
        brokerUrl: string;
      };
      owners.push(answer.brokerUrl);
    }
    // The service URL names the other broker: its lookups must redirect.
    const through = BROKERS.find((url) => url !== owners[0])!;
    expect(BROKERS).toContain(owners[0]);
    const executions = new Counter();
    const system = await countingSystem('Echo', executions, through);
    try {
      const total = 5000;
      const results = await Promise.all(
        [...Array(total).keys()].map((i) => system.client.service<Echo>('Echo', { meta: { batchKey: `k${i % 8}` } }).echo(`${i}`)),
      );
      expect(results).toEqual([...Array(total).keys()].map((i) => `echo ${i}`));
      expect(executions.values()).toHaveLength(total);
      expect(Math.max(...executions.values())).toBe(1);
      // No partition starved: every one's backlog drains (acks travel after the results, so it is awaited).
      await vi.waitFor(
        async () => {
          const stats = (await admin('GET', `persistent/public/${namespace}/${taskTopic('Echo')}/partitioned-stats?perPartition=true`)) as {
            partitions: Record<string, { subscriptions: Record<string, { msgBacklog: number }> }>;
          };
          const backlogs = Object.values(stats.partitions).map((p) => p.subscriptions['sheaf-workers']?.msgBacklog);
          expect(backlogs).toEqual(Array(6).fill(0));
        },
        { timeout: 10_000, interval: 200 },
      );
    } finally {
      await system.stop();
    }
  });

  test('a multi-host service URL whose first host is gone: start and every lookup go to the next', async () => {
    const system = await startSystem(
      [{ name: 'Solo', executor: { factory: () => new (countingEcho(new Counter()))(), batch: { maxMessages: 10, maxSeconds: 0.05 } } }],
      transport(`pulsar://127.0.0.1:6699,${BROKERS[1]!.replace('pulsar://', '')}`),
    );
    try {
      const results = await Promise.all(['a', 'b'].map((v) => system.client.service<Echo>('Solo').echo(v)));
      expect(results).toEqual(['echo a', 'echo b']);
    } finally {
      await system.stop();
    }
  });

  test('the namespace unloaded every 2 s while 50,000 tasks flow over 6 partitions: every task answered', async () => {
    const service = 'Unloaded';
    await admin('PUT', `persistent/public/${namespace}/${taskTopic(service)}/partitions`, 6);
    const executions = new Counter();
    const system = await countingSystem(service, executions, BOTH_BROKERS);
    let unloads = 0;
    const unloading = setInterval(() => {
      void admin('PUT', `namespaces/public/${namespace}/unload`).then(
        () => (unloads += 1),
        () => undefined,
      );
    }, 2000);
    const started = Date.now();
    try {
      const total = 50_000;
      const handles = await Promise.all(
        [...Array(total).keys()].map((i) =>
          system.client.dispatch(system.client.service<Echo>(service, { meta: { batchKey: `k${i % 8}` } })).echo(`${i}`),
        ),
      );
      const answered = new Set<string>();
      const results = await whileExplained(Promise.all(handles.map((h) => h.result().finally(() => answered.add(h.id)))), 150_000, () => {
        // Which side a lost task stopped on: never run (dispatch, consumer) or run and not answered (result path).
        const missing = handles.filter((h) => !answered.has(h.id));
        const ran = missing.filter((h) => executions.get(h.id) > 0);
        return `${answered.size} of ${total} answered after 150 s, ${unloads} unloads; of the ${missing.length} unanswered, ${ran.length} were executed (e.g. ${missing
          .slice(0, 3)
          .map((h) => h.id)
          .join(', ')})`;
      });
      expect(results).toEqual([...Array(total).keys()].map((i) => `echo ${i}`));
      const twice = executions.values().filter((n) => n > 1).length;
      testLogger.info({ unloads, twice, seconds: (Date.now() - started) / 1000 }, 'unload run');
      expect(executions.values()).toHaveLength(total);
      expect(unloads).toBeGreaterThan(0);
      // The bound under an unload every 5 s.
      expect(twice).toBeLessThanOrEqual(total * 0.02);
    } finally {
      clearInterval(unloading);
      await system.stop();
    }
  }, 180_000);

  test('a broker killed -9 while 30,000 tasks flow over 6 partitions: no dispatch fails, every task answered, at most 5 % run twice', async () => {
    const service = 'Survivor';
    await admin('PUT', `persistent/public/${namespace}/${taskTopic(service)}/partitions`, 6);
    const owner = (await admin('GET', `lookup/v2/topic/persistent/public/${namespace}/${taskTopic(service)}-partition-0`)) as {
      brokerUrl: string;
    };
    const victim = BROKER_NAMES[owner.brokerUrl]!;
    const survivor = Object.values(BROKER_NAMES).find((b) => b !== victim)!;
    const executions = new Counter();
    const system = await countingSystem(service, executions, BOTH_BROKERS);
    const total = 30_000;
    const window = 2000;
    const results: string[] = [];
    const failures: string[] = [];
    let answered = 0;
    let killing: Promise<unknown> | undefined;
    try {
      // Dispatched as a client under load does, 2,000 in flight, so that sends to the victim's partitions are
      // waiting when it dies. They must outlast its metadata session (30 s), after which its partitions move:
      // the default send timeout (60 s) does; with 30 s, hundreds failed with SendTimeoutError.
      let next = 0;
      const lane = async (): Promise<void> => {
        while (next < total) {
          const i = next++;
          try {
            results[i] = await system.client.service<Echo>(service, { meta: { batchKey: `k${i % 8}` } }).echo(`${i}`);
          } catch (error) {
            failures.push((error as Error).name);
          }
          answered += 1;
          if (answered === total / 10) {
            web = survivor.web;
            killing = cluster('kill-broker', victim.name);
          }
        }
      };
      await Promise.all([...Array(window).keys()].map(lane));
      await killing;
      expect({ failed: failures.length, as: [...new Set(failures)] }).toEqual({ failed: 0, as: [] });
      expect(results).toEqual([...Array(total).keys()].map((i) => `echo ${i}`));
      expect(executions.values()).toHaveLength(total);
      // Issue 14's bound for a broker killed mid-batch (the two-process run on a standalone broker is a full fault run).
      const twice = executions.values().filter((n) => n > 1).length;
      testLogger.info({ twice }, 'broker kill run');
      expect(twice).toBeLessThanOrEqual(total * 0.05);
    } finally {
      await system.stop();
      await killing;
      await cluster('start-broker', victim.name);
    }
  }, 240_000);
});
