import { InMemoryTransport } from '../../src/transport/memory/in-memory-transport.js';
import { describeTransportContract } from './transport-contract.js';

describeTransportContract({ name: 'inMemory', create: async () => new InMemoryTransport() });
