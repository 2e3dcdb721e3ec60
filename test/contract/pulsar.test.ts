import { noPulsar, pulsarTransport } from '../support/pulsar.js';
import { describeTransportContract } from './transport-contract.js';

describeTransportContract({ name: 'pulsar', skip: noPulsar(), create: () => pulsarTransport() });
