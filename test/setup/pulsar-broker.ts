/**
 * Vitest global setup: finds or starts the Pulsar broker the integration
 * tests run against, and provides its URL to them (`inject('pulsarUrl')`).
 *
 *   1. PULSAR_URL, when set (an existing broker).
 *   2. testcontainers (`apachepulsar/pulsar`, the version pinned in
 *      scripts/pulsar.sh), when a Docker engine answers.
 *   3. scripts/pulsar.sh: the server distribution from Maven Central, run as
 *      a standalone broker; stopped again afterwards unless it was already up.
 *
 * Test namespaces that interrupted runs left on the broker (over 3 hours
 * old: no run lasts that long) are deleted first.
 *
 * Without a broker the Pulsar tests are skipped, unless SHEAF_REQUIRE_PULSAR=1
 * (CI sets it): then a missing broker fails the run. SHEAF_SKIP_PULSAR=1 skips
 * them on purpose (quick unit-test loops).
 */
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';
import { sweepStaleTestNamespaces } from '../support/admin.js';

const run = promisify(execFile);
const script = new URL('../../scripts/pulsar.sh', import.meta.url).pathname;
const PULSAR_VERSION = /PULSAR_VERSION="\$\{PULSAR_VERSION:-([^}]+)\}"/.exec(readFileSync(script, 'utf8'))![1]!;

let teardown: (() => Promise<void>) | undefined;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const required = process.env.SHEAF_REQUIRE_PULSAR === '1';
  if (process.env.SHEAF_SKIP_PULSAR === '1' && !required) {
    project.provide('pulsarUrl', '');
    project.provide('pulsarAdminUrl', '');
    project.provide('pulsarThroughServiceUrl', false);
    return async () => undefined;
  }
  const found = await findBroker().catch((error: unknown) => {
    if (required)
      throw new Error(`SHEAF_REQUIRE_PULSAR=1 but no Pulsar broker could be found or started: ${(error as Error).message}`, {
        cause: error,
      });
    console.warn(`[sheaf] no Pulsar broker (${(error as Error).message}); the Pulsar tests are skipped`);
    return { url: '', adminUrl: '', throughServiceUrl: false };
  });
  if (found.adminUrl) {
    // Namespaces of runs that were interrupted (killed, timed out) before their files could delete them.
    const swept = await sweepStaleTestNamespaces(found.adminUrl).catch((error: unknown) => {
      console.warn(`[sheaf] could not sweep test namespaces left by interrupted runs: ${(error as Error).message}`);
      return 0;
    });
    if (swept > 0) console.warn(`[sheaf] deleted ${swept} test namespaces left by interrupted runs (over 3 hours old)`);
  }
  project.provide('pulsarUrl', found.url);
  project.provide('pulsarAdminUrl', found.adminUrl);
  project.provide('pulsarThroughServiceUrl', found.throughServiceUrl);
  return async () => {
    await teardown?.();
  };
}

interface Broker {
  readonly url: string;
  /** The admin REST API, used by tests to create namespaces and partitioned topics. */
  readonly adminUrl: string;
  /** Port-mapped (a container): the broker's advertised address is not reachable from here. */
  readonly throughServiceUrl: boolean;
}

async function findBroker(): Promise<Broker> {
  if (process.env.PULSAR_URL) {
    const url = process.env.PULSAR_URL;
    const { hostname, port } = new URL(url.replace(/^pulsar(\+ssl)?:/, 'http:'));
    if (!(await reachable(hostname, Number(port || 6650)))) throw new Error(`PULSAR_URL=${url} does not answer`);
    return {
      url,
      adminUrl: process.env.PULSAR_ADMIN_URL ?? `http://${hostname}:8080`,
      throughServiceUrl: process.env.PULSAR_THROUGH_SERVICE_URL === '1',
    };
  }
  if (await dockerAnswers()) return startContainer();
  return startWithScript();
}

async function dockerAnswers(): Promise<boolean> {
  try {
    await run('docker', ['info', '--format', '{{.ServerVersion}}'], { timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

async function startContainer(): Promise<Broker> {
  const { GenericContainer, Wait } = await import('testcontainers');
  console.warn(`[sheaf] starting apachepulsar/pulsar:${PULSAR_VERSION} with testcontainers`);
  const container = await new GenericContainer(`apachepulsar/pulsar:${PULSAR_VERSION}`)
    // The same broker settings as scripts/pulsar.sh and docker-compose.yml.
    .withCommand(['sh', '-c', 'bin/apply-config-from-env.py conf/standalone.conf && exec bin/pulsar standalone -nfw -nss'])
    .withEnvironment({
      PULSAR_MEM: '-Xms512m -Xmx1g -XX:MaxDirectMemorySize=1g',
      isDelayedDeliveryDeliverAtTimeStrict: 'true',
      delayedDeliveryTickTimeMillis: '100',
      acknowledgmentAtBatchIndexLevelEnabled: 'true',
    })
    .withExposedPorts(6650, 8080)
    .withWaitStrategy(Wait.forHttp('/admin/v2/brokers/ready', 8080).forStatusCode(200))
    .withStartupTimeout(240_000)
    .start();
  teardown = async () => {
    await container.stop();
  };
  const host = container.getHost();
  return {
    url: `pulsar://${host}:${container.getMappedPort(6650)}`,
    adminUrl: `http://${host}:${container.getMappedPort(8080)}`,
    throughServiceUrl: true,
  };
}

async function startWithScript(): Promise<Broker> {
  const alreadyUp = await reachable('127.0.0.1', 6650);
  if (!alreadyUp) {
    console.warn('[sheaf] starting a standalone Pulsar broker with scripts/pulsar.sh (the first run downloads it)');
    await new Promise<void>((resolve, reject) => {
      const child = spawn('bash', [script, 'start'], { stdio: ['ignore', 'inherit', 'inherit'] });
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`scripts/pulsar.sh start exited with ${code}`))));
    });
    if (process.env.SHEAF_KEEP_PULSAR !== '1') {
      teardown = async () => {
        await run('bash', [script, 'stop']);
      };
    }
  }
  return { url: 'pulsar://127.0.0.1:6650', adminUrl: 'http://127.0.0.1:8080', throughServiceUrl: false };
}

function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.setTimeout(2000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}
