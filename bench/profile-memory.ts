/**
 * A profiling target: end to end on the in-memory transport, maxMessages 100.
 *   node --cpu-prof --cpu-prof-dir=bench/results/profiles --import tsx bench/profile-memory.ts
 */
import { InMemoryTransport } from '../src/transport/memory/in-memory-transport.js';
import { endToEnd } from './end-to-end.js';

const result = await endToEnd(new InMemoryTransport(), 100, Number(process.env.TASKS ?? 200_000));
console.log(`${Math.round(result.tasksPerSecond)} tasks/s`);
