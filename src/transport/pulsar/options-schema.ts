/**
 * The Pulsar settings that read the same in `sheaf.yml` (`pulsar:` block)
 * and in `new PulsarTransport({...})`: one declaration for both schemas.
 * (Authentication and TLS differ: files in YAML, values in code.)
 */
import { z } from 'zod';
import { positiveInt, positiveNumber, strictObject } from '../../config/issues.js';
import { COMPRESSION_NAMES } from './compression.js';

export const pulsarTuningShape = {
  connectThroughServiceUrl: z.boolean({ error: 'must be true or false' }).optional().describe('one broker behind port mapping'),
  connectTimeoutSeconds: positiveNumber().optional(),
  operationTimeoutSeconds: positiveNumber().optional(),
  keepAliveIntervalSeconds: positiveNumber().optional(),
  nackRedeliveryDelayMs: z.number().int().nonnegative({ error: 'must be an integer ≥ 0' }).optional(),
  producer: strictObject({
    maxPendingMessages: positiveInt().optional(),
    batchingMaxMessages: positiveInt().optional(),
    batchingMaxDelayMs: z.number().nonnegative({ error: 'must be a number ≥ 0' }).optional(),
    batchingMaxBytes: positiveInt().optional(),
    compression: z.enum(COMPRESSION_NAMES, { error: `must be one of ${COMPRESSION_NAMES.join(', ')}` }).optional(),
    chunking: z.boolean({ error: 'must be true or false' }).optional(),
    chunkMaxMessageSize: positiveInt().optional(),
    sendTimeoutSeconds: z.number().nonnegative({ error: 'must be a number ≥ 0 (0: no timeout)' }).optional(),
    routingMode: z.enum(['roundRobin', 'singlePartition'], { error: 'must be roundRobin or singlePartition' }).optional(),
    hashingScheme: z.enum(['javaStringHash', 'murmur3_32Hash'], { error: 'must be javaStringHash or murmur3_32Hash' }).optional(),
  }).optional(),
  consumer: strictObject({
    batchIndexAck: z.boolean({ error: 'must be true or false' }).optional(),
    maxPendingChunkedMessages: positiveInt().optional(),
    expireIncompleteChunkedMessageSeconds: positiveNumber().optional(),
    maxChunkedMessageBytes: positiveInt().optional(),
  }).optional(),
};
