import { InMemoryTransport } from '../../src/transport/memory/in-memory-transport.js';
import type { Transport } from '../../src/transport/transport.js';
import { noPulsar, pulsarTransport } from './pulsar.js';

export interface TransportTarget {
  readonly name: string;
  /** True when this transport cannot run here (no broker), so its suites are skipped. */
  readonly skip: boolean;
  create(): Promise<Transport>;
}

/** Every transport the end-to-end suites run on. */
export function transportTargets(): TransportTarget[] {
  return [
    { name: 'inMemory', skip: false, create: async () => new InMemoryTransport({ nackRedeliveryDelayMs: 20 }) },
    { name: 'pulsar', skip: noPulsar(), create: () => pulsarTransport() },
  ];
}
