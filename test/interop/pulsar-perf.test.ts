/**
 * pulsar-perf (the Java client, batching on by default: many messages per
 * entry) into a Sheaf consumer. Before permits were counted as the broker
 * counts them, a consumer stalled for good after about 10,000 of these
 * messages: a batch delivered on the last permits left its count above the
 * broker's, and FLOW was never sent again.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { ReceivedMessage } from '../../src/transport/transport.js';
import type { PulsarTransport } from '../../src/transport/pulsar/pulsar-transport.js';
import { freshNamespace, noPulsar, pulsarTransport, pulsarUrl } from '../support/pulsar.js';
import { pulsarHome } from './java-client.js';

const run = promisify(execFile);
const MESSAGES = 200_000;

describe.skipIf(noPulsar())('pulsar-perf into a Sheaf consumer', () => {
  let namespace: string;
  let transport: PulsarTransport;
  beforeAll(async () => {
    await pulsarHome();
    namespace = await freshNamespace();
    transport = await pulsarTransport({ namespace });
  }, 600_000);
  afterAll(async () => {
    await transport?.close();
  });

  test(`${MESSAGES.toLocaleString('en')} batched messages arrive, every one, with a small window`, async () => {
    const topic = `persistent://public/${namespace}/perf`;
    // A window far smaller than pulsar-perf's batches (up to 1,000 messages an entry): the broker overshoots it all the time.
    const consumer = await transport.subscribe({ topic, subscription: 's', maxUnacked: 200 });
    const perf = run(
      `${await pulsarHome()}/bin/pulsar-perf`,
      ['produce', '--service-url', pulsarUrl(), '-r', '200000', '-m', String(MESSAGES), '-s', '100', topic],
      { timeout: 180_000, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, PULSAR_MEM: '-Xms256m -Xmx512m' } },
    );
    let received = 0;
    const receiveOne = async (timeoutMs: number): Promise<ReceivedMessage | null> =>
      consumer.receive(AbortSignal.timeout(timeoutMs)).catch(() => null);
    // Until pulsar-perf is done, then until the subscription is drained.
    let sent: number | null = null;
    void perf.then(({ stdout, stderr }) => {
      const match = /Aggregated throughput stats --- (\d+) records sent/.exec(stdout + stderr);
      sent = match ? Number(match[1]) : -1;
    });
    for (;;) {
      const message = await receiveOne(sent === null ? 30_000 : 5_000);
      if (!message) break;
      received += 1;
      await consumer.ack(message);
    }
    await perf;
    expect(sent).toBeGreaterThanOrEqual(MESSAGES);
    expect(received).toBe(sent);
  }, 240_000);
});
