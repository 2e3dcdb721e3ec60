/**
 * Reconnection while tasks flow: worker and client reach the broker through a
 * proxy the test controls, and every connection is cut several times during
 * the run. Both sides must reconnect on their own and no task may be lost.
 */
import 'reflect-metadata';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { SheafClient } from '../../src/client/client.js';
import { SheafWorker } from '../../src/worker/worker.js';
import { testLogger } from '../support/logger.js';
import type { Transport } from '../../src/transport/transport.js';
import { freshNamespace, noPulsar, pulsarTransport, pulsarUrl } from '../support/pulsar.js';
import { PulsarTestProxy } from '../support/pulsar-proxy.js';
import { Counter, countingEcho, startSystem, type System } from '../support/system.js';

interface Echo {
  echo(value: string): Promise<string>;
}

describe.skipIf(noPulsar())('reconnection under load', () => {
  let system: System | undefined;
  let proxy: PulsarTestProxy | undefined;
  afterEach(async () => {
    await system?.stop();
    await proxy?.stop();
  });

  test('connections cut three times while 2,000 tasks flow: every task completes, none is lost', async () => {
    const executions = new Counter();
    const EchoImpl = countingEcho(executions);
    const { hostname, port } = new URL(pulsarUrl().replace(/^pulsar:/, 'http:'));
    proxy = new PulsarTestProxy(hostname, Number(port));
    const viaProxy = await proxy.start();
    const transport = await pulsarTransport({ brokerServiceUrl: viaProxy, keepAliveIntervalSeconds: 5 });
    system = await startSystem(
      [{ name: 'Echo', executor: { factory: () => new EchoImpl(), concurrency: 4, batch: { maxMessages: 50, maxSeconds: 0.05 } } }],
      transport,
    );
    const total = 2000;
    const cutsAt = new Set([total / 4, total / 2, (3 * total) / 4]);
    let done = 0;
    let cuts = 0;
    const results = await Promise.all(
      [...Array(total)].map((_, i) =>
        system!.client
          .service<Echo>('Echo', { meta: { batchKey: `k${i % 5}` } })
          .echo(`${i}`)
          .then((r) => {
            done += 1;
            if (cutsAt.has(done)) {
              cuts += 1;
              proxy!.cutAll();
            }
            return r;
          }),
      ),
    );
    expect(cuts).toBe(3);
    expect(results).toEqual([...Array(total)].map((_, i) => `echo ${i}`));
    // Each task ran at least once; copies come only from redelivery after a cut.
    const runs = executions.values();
    expect(runs).toHaveLength(total);
    expect(Math.min(...runs)).toBeGreaterThanOrEqual(1);
    // Clients and workers came back through the proxy with new connections.
    expect(proxy.accepted).toBeGreaterThan(3);
    expect(system.client.pendingTasks).toBe(0);
  });
});

describe.skipIf(noPulsar())('a non-durable subscription across a reconnect', () => {
  const opened: Transport[] = [];
  let proxy: PulsarTestProxy | undefined;
  afterEach(async () => {
    for (const t of opened.splice(0)) await t.close();
    await proxy?.stop();
  });

  test('resumes after the last message it was given, not from the latest', async () => {
    const { hostname, port } = new URL(pulsarUrl().replace(/^pulsar:/, 'http:'));
    proxy = new PulsarTestProxy(hostname, Number(port));
    const viaProxy = await proxy.start();
    const readerSide = await pulsarTransport({ brokerServiceUrl: viaProxy });
    const direct = await pulsarTransport();
    opened.push(readerSide, direct);
    const topic = `reader-${Date.now().toString(36)}`;
    const reader = await readerSide.subscribe({ topic, subscription: 'reader', maxUnacked: 10, durable: false });
    const producer = await direct.createProducer(readerSide.topicName(topic));
    const text = (payload: Uint8Array): string => new TextDecoder().decode(payload);
    const send = (s: string): Promise<string> => producer.send({ payload: new TextEncoder().encode(s) });
    await send('m1');
    const first = await reader.receive();
    expect(text(first.payload)).toBe('m1');
    await reader.ack(first);
    // The reader is cut off; what is published meanwhile is past its subscription's start if it resubscribed at the latest.
    proxy.refuseNew = true;
    proxy.cutAll();
    await send('m2');
    await send('m3');
    proxy.refuseNew = false;
    const seen: string[] = [];
    while (!seen.includes('m3')) for (const m of await reader.receiveMany(10)) seen.push(text(m.payload));
    // The broker may send the entry it resumed from again: never anything older, never a gap.
    expect(seen.filter((s) => s !== 'm1')).toEqual(['m2', 'm3']);
    await producer.close();
  });
});

describe.skipIf(noPulsar())('tasks delivered on a lost connection', () => {
  const cleanups: Array<() => Promise<void>> = [];
  let proxy: PulsarTestProxy | undefined;
  afterEach(async () => {
    if (proxy) proxy.refuseNew = false;
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await proxy?.stop();
  });

  test('a worker cut off from the broker does not start what it was given: the broker redelivers it, and it runs once', async () => {
    const executions = new Counter();
    const EchoImpl = countingEcho(executions);
    const service = (maxSeconds: number) => ({
      name: 'Echo',
      executor: { factory: () => new EchoImpl(), batch: { maxMessages: 1000, maxSeconds } },
    });
    const { hostname, port } = new URL(pulsarUrl().replace(/^pulsar:/, 'http:'));
    proxy = new PulsarTestProxy(hostname, Number(port));
    const viaProxy = await proxy.start();
    const namespace = await freshNamespace();
    const cutOffSide = await pulsarTransport({ brokerServiceUrl: viaProxy, namespace });
    const direct = await pulsarTransport({ namespace });
    cleanups.push(
      () => direct.close(),
      () => cutOffSide.close(),
    );
    // Its batch waits 3 s to fill: long enough to lose the connection before it starts.
    const cutOff = new SheafWorker({ transport: cutOffSide, services: [service(3)], logger: testLogger, name: 'cut-off' });
    await cutOff.start();
    cleanups.push(() => cutOff.close());
    let batchesRunByCutOff = 0;
    cutOff.events.on('batch', () => (batchesRunByCutOff += 1));
    const client = await SheafClient.connect({ transport: direct, logger: testLogger });
    cleanups.push(() => client.close());
    const total = 20;
    const results = Promise.all(
      [...Array(total).keys()].map((i) => client.service<Echo>('Echo', { meta: { batchKey: 'k' } }).echo(`${i}`)),
    );
    await vi.waitFor(() => expect(cutOff.stats().Echo!.bufferedTasks).toBe(total), { timeout: 10_000 });
    proxy.refuseNew = true;
    proxy.cutAll();
    const other = new SheafWorker({ transport: direct, services: [service(0.05)], logger: testLogger, name: 'other' });
    await other.start();
    cleanups.push(() => other.close());
    expect(await results).toEqual([...Array(total).keys()].map((i) => `echo ${i}`));
    // The cut-off worker's batch comes due: it hands its tasks back instead of running them.
    await vi.waitFor(() => expect(cutOff.stats().Echo).toMatchObject({ bufferedTasks: 0, runningExecutions: 0 }), { timeout: 10_000 });
    expect(batchesRunByCutOff).toBe(0);
    expect(executions.values()).toEqual(Array(total).fill(1));
  });
});
