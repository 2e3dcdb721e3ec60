/**
 * Reconnection while tasks flow: worker and client reach the broker through a
 * proxy the test controls, and every connection is cut several times during
 * the run. Both sides must reconnect on their own and no task may be lost.
 */
import 'reflect-metadata';
import { afterEach, describe, expect, test } from 'vitest';
import { Batch } from '../../src/service/decorators.js';
import { noPulsar, pulsarTransport, pulsarUrl } from '../support/pulsar.js';
import { PulsarTestProxy } from '../support/pulsar-proxy.js';
import { Counter, startSystem, type System } from '../support/system.js';

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
    class EchoImpl {
      echo(_v: string): void {}
      @Batch('echo')
      async echoMany(tasks: Map<string, string>): Promise<Map<string, string>> {
        for (const id of tasks.keys()) executions.add(id);
        return new Map([...tasks].map(([id, v]) => [id, `echo ${v}`]));
      }
    }
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
