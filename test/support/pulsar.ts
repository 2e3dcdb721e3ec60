import { inject } from 'vitest';
import { PulsarTransport, type PulsarTransportOptions } from '../../src/transport/pulsar/pulsar-transport.js';
import { testLogger } from './logger.js';

/** The broker the global setup found or started (test/setup/pulsar-broker.ts); '' when there is none. */
export const pulsarUrl = (): string => inject('pulsarUrl');

/** True when the Pulsar tests must be skipped (no broker, and CI did not require one). */
export const noPulsar = (): boolean => pulsarUrl() === '';

export function pulsarTransport(options: Partial<PulsarTransportOptions> = {}): PulsarTransport {
  return new PulsarTransport({ brokerServiceUrl: pulsarUrl(), logger: testLogger, nackRedeliveryDelayMs: 100, ...options });
}

declare module 'vitest' {
  export interface ProvidedContext {
    pulsarUrl: string;
  }
}
