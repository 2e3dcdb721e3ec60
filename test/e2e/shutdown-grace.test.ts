/**
 * A graceful stop with a deadline: past `shutdownGraceSeconds` the worker
 * stops waiting (a hung batch, a broker that is gone), closes what it can,
 * and says what it left unsettled; the broker redelivers it.
 */
import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, test } from 'vitest';
import { inject } from 'vitest';
import { ShutdownTimeoutError } from '../../src/errors.js';
import { SheafClient } from '../../src/client/client.js';
import { Batch } from '../../src/service/decorators.js';
import { InMemoryTransport } from '../../src/transport/memory/in-memory-transport.js';
import { PulsarTransport } from '../../src/transport/pulsar/pulsar-transport.js';
import { SheafWorker } from '../../src/worker/worker.js';
import { testLogger } from '../support/logger.js';
import { freshNamespace, noPulsar, pulsarUrl } from '../support/pulsar.js';
import { PulsarTestProxy } from '../support/pulsar-proxy.js';
import { startCli, writeEchoConfig } from '../support/cli.js';

interface Work {
  run(n: number): Promise<number>;
}

/** A batch method that never returns (and ignores its abort signal), and says when it started. */
class Hangs {
  started: () => void = () => undefined;
  run(_n: number): void {}
  @Batch('run')
  async runMany(_tasks: Map<string, number>): Promise<Map<string, number>> {
    this.started();
    return new Promise(() => undefined);
  }
}

class Works {
  run(_n: number): void {}
  @Batch('run')
  async runMany(tasks: Map<string, number>): Promise<Map<string, number>> {
    return new Map([...tasks].map(([id, n]) => [id, n * 2]));
  }
}

describe('shutdownGraceSeconds', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  test('a hung batch: close() gives up after the grace with ShutdownTimeoutError naming what is unsettled; another worker gets it all', async () => {
    const transport = new InMemoryTransport({ nackRedeliveryDelayMs: 20 });
    cleanups.push(() => transport.close());
    const hangs = new Hangs();
    const started = new Promise<void>((resolve) => (hangs.started = resolve));
    const stuck = new SheafWorker({
      transport,
      logger: testLogger,
      shutdownGraceSeconds: 0.3,
      services: [{ name: 'Work', executor: { factory: () => hangs, timeoutSeconds: 3600, batch: { maxMessages: 3, maxSeconds: 30 } } }],
    });
    await stuck.start();
    const client = await SheafClient.connect({ transport, logger: testLogger });
    cleanups.push(() => client.close());
    const work = client.service<Work>('Work', { meta: { batchKey: 'k' } });
    const results = Promise.all([1, 2, 3].map((n) => work.run(n)));
    await started;
    const error = await stuck.close().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ShutdownTimeoutError);
    expect((error as ShutdownTimeoutError).unsettled).toEqual({ Work: 3 });
    expect((error as Error).message).toMatch(
      /within shutdownGraceSeconds \(0\.3 s\): 3 tasks left unsettled \(Work: 3\); the broker redelivers them/,
    );
    expect(stuck.state.status).toBe('closed');
    // Nothing was lost: a worker that works settles every task.
    const next = new SheafWorker({ transport, logger: testLogger, services: [{ name: 'Work', executor: { factory: () => new Works() } }] });
    await next.start();
    cleanups.push(() => next.close());
    expect(await results).toEqual([2, 4, 6]);
  });

  test('0 waits for ever; a negative grace is a ConfigError naming the key', () => {
    const transport = new InMemoryTransport();
    const services = [{ name: 'Work', executor: { factory: () => new Works() } }];
    expect(() => new SheafWorker({ transport, services, shutdownGraceSeconds: 0 })).not.toThrow();
    expect(() => new SheafWorker({ transport, services, shutdownGraceSeconds: -1 })).toThrow(
      /shutdownGraceSeconds: must be a number of seconds ≥ 0/,
    );
  });
});

describe.skipIf(noPulsar())('shutdownGraceSeconds, the broker gone (pulsar)', () => {
  test('SIGTERM with a batch running and the broker unreachable: exit 1 within the grace plus a second, naming what was left', async () => {
    const { hostname, port } = new URL(pulsarUrl().replace(/^pulsar:/, 'http:'));
    const proxy = new PulsarTestProxy(hostname, Number(port));
    const proxied = await proxy.start();
    const namespace = await freshNamespace();
    const config = await writeEchoConfig({
      transport: 'pulsar',
      pulsar: { brokerServiceUrl: proxied, namespace, connectThroughServiceUrl: true },
      executor: 'batch: { maxMessages: 5, maxSeconds: 30 }',
    });
    const { writeFile, readFile } = await import('node:fs/promises');
    await writeFile(config, `${await readFile(config, 'utf8')}shutdownGraceSeconds: 1\n`);
    const worker = startCli(['worker', '-c', config], { ECHO_ANNOUNCE: '1', ECHO_SLOW_MS: '60000' });
    const transport = new PulsarTransport({
      brokerServiceUrl: pulsarUrl(),
      namespace,
      logger: testLogger,
      connectThroughServiceUrl: inject('pulsarThroughServiceUrl'),
    });
    const client = await SheafClient.connect({ transport, logger: testLogger, name: `grace-${randomUUID().slice(0, 8)}` });
    try {
      await worker.waitFor(/"msg":"worker ready"/);
      const echo = client.service<{ echo(v: string): Promise<string> }>('Echo', { meta: { batchKey: 'k' } });
      for (const v of ['a', 'b', 'c', 'd', 'e']) void client.dispatch(echo).echo(v);
      await worker.waitFor(/echo batch of 5 started/);
      await proxy.stop(); // the broker is gone for the worker
      const signalled = Date.now();
      worker.child.kill('SIGTERM');
      expect(await worker.exited).toBe(1);
      expect(Date.now() - signalled).toBeLessThan(1000 + 1000 + 1000); // the grace, the second to close, and a process exit
      expect(worker.stderr()).toMatch(/drain did not end within shutdownGraceSeconds \(1 s\): 5 tasks left unsettled \(Echo: 5\)/);
    } finally {
      worker.child.kill('SIGKILL');
      await client.close();
      await transport.close();
    }
  });
});
