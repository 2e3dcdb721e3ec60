/**
 * The Pulsar settings that read the same in `sheaf.yml` (`pulsar:` block)
 * and in `new PulsarTransport({...})`: one declaration for both schemas.
 * (Authentication and TLS differ: files in YAML, values in code.)
 */
import { z } from 'zod';
import { positiveInt, positiveNumber, strictObject } from '../../config/issues.js';

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
  }).optional(),
};
