/**
 * A profiling target: end to end on Pulsar (producer batching on), maxMessages 100.
 *   node --cpu-prof --import tsx bench/profile-pulsar.ts <namespace>
 */
import { pino } from 'pino';
import { PulsarTransport } from '../src/transport/pulsar/pulsar-transport.js';
import { endToEnd } from './end-to-end.js';

const transport = new PulsarTransport({
  brokerServiceUrl: process.env.PULSAR_URL ?? 'pulsar://127.0.0.1:6650',
  namespace: process.argv[2] ?? 'default',
  logger: pino({ level: 'warn' }),
  producer: { batchingMaxMessages: 100, batchingMaxDelayMs: 1 },
});
const result = await endToEnd(transport, 100, 40_000);
console.log(`${Math.round(result.tasksPerSecond)} tasks/s`);
process.exit(0);
