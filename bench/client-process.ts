/**
 * A client in a process of its own, for the process benchmarks: dispatches
 * `count` tasks to the NoWork service and prints one JSON line.
 *   mode=dispatch  fire-and-forget: how fast one client sends tasks
 *   mode=e2e       awaited (10,000 at a time): tasks/s and p50/p99 latency
 *   mode=receive   drains `count` preloaded results from the topic named in
 *                  place of the service, as the client's result loop does
 */
import { pino } from 'pino';
import { SheafClient } from '../src/client/client.js';
import { PulsarTransport } from '../src/transport/pulsar/pulsar-transport.js';
import { CLIENT_SUBSCRIPTION } from '../src/topics.js';
import { decodeResults } from '../src/wire/envelopes.js';

const [url, namespace, service, mode, countText] = process.argv.slice(2) as [
  string,
  string,
  string,
  'dispatch' | 'e2e' | 'receive',
  string,
];
const count = Number(countText);
if (mode === 'receive') {
  // The client's result loop, without tasks of its own waiting: receive many, decode, ack many.
  const transport = new PulsarTransport({ brokerServiceUrl: url, namespace, logger: pino({ level: 'warn' }) });
  const consumer = await transport.subscribe({ topic: service, subscription: CLIENT_SUBSCRIPTION, maxUnacked: 1000 });
  const started = performance.now();
  let seen = 0;
  while (seen < count) {
    const messages = await consumer.receiveMany(1000);
    for (const message of messages) seen += decodeResults(message.payload).length;
    await consumer.ackAll(messages);
  }
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(`${JSON.stringify({ tasksPerSecond: count / seconds })}\n`);
  await consumer.close();
  await transport.close();
  process.exit(0);
}
const transport = new PulsarTransport({ brokerServiceUrl: url, namespace, logger: pino({ level: 'warn' }) });
const client = await SheafClient.connect({ transport, logger: pino({ level: 'warn' }), maxUnackedResults: 5000 });
const stub = client.service<{ run(i: number): Promise<number> }>(service);
const keys = 8;
const started = performance.now();
const latencies: number[] = [];
if (mode === 'dispatch') {
  for (let i = 0; i < count; i += 1000) {
    await Promise.all(
      [...Array(Math.min(1000, count - i)).keys()].map((k) =>
        client.dispatch(stub, { batchKey: `k${(i + k) % keys}`, fireAndForget: true }).run(i + k),
      ),
    );
  }
} else {
  let inFlight = 0;
  let wake: (() => void) | null = null;
  const all: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    while (inFlight >= 10_000) await new Promise<void>((resolve) => (wake = resolve));
    inFlight += 1;
    const t = performance.now();
    all.push(
      client
        .dispatch(stub, { batchKey: `k${i % keys}` })
        .run(i)
        .then((h) => h.result())
        .then(() => {
          latencies.push(performance.now() - t);
          inFlight -= 1;
          wake?.();
          wake = null;
        }),
    );
  }
  await Promise.all(all);
}
const seconds = (performance.now() - started) / 1000;
latencies.sort((a, b) => a - b);
const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
process.stdout.write(`${JSON.stringify({ tasksPerSecond: count / seconds, p50Ms: at(0.5), p99Ms: at(0.99) })}\n`);
await client.close();
await transport.close();
