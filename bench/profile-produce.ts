/**
 * A profiling target: Sheaf's Pulsar producer with batching, 100-byte messages.
 *   node --cpu-prof --import tsx bench/profile-produce.ts <namespace>
 */
import { sheafClientRates } from './client-rates.js';

const namespace = process.argv[2] ?? 'default';
const rates = await sheafClientRates(
  process.env.PULSAR_URL ?? 'pulsar://127.0.0.1:6650',
  namespace,
  `profile-${Date.now()}`,
  100,
  300_000,
  true,
);
console.log(`${Math.round(rates.produce)} msg/s produced, ${Math.round(rates.consume)} msg/s consumed`);
process.exit(0);
