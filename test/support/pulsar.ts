import { inject } from 'vitest';
import { PulsarClient } from '../../src/transport/pulsar/client.js';
import { CommandType, type MessageMetadata } from '../../src/transport/pulsar/commands.js';
import { PulsarTransport, type PulsarTransportOptions } from '../../src/transport/pulsar/pulsar-transport.js';
import { testLogger } from './logger.js';
import { adminAt, deleteNamespace as deleteNamespaceThrough, testNamespaceName, type AdminCall } from './admin.js';

export { adminAt, type AdminCall };

/** The broker the global setup found or started (test/setup/pulsar-broker.ts); '' when there is none. */
export const pulsarUrl = (): string => inject('pulsarUrl');
/** The broker's admin REST API (http://host:8080). */
export const pulsarAdminUrl = (): string => inject('pulsarAdminUrl');
const adminUrl = pulsarAdminUrl;

/** True when the Pulsar tests must be skipped (no broker, and CI did not require one). */
export const noPulsar = (): boolean => pulsarUrl() === '';

/** Calls the admin REST API of the broker the tests run against. */
export const admin: AdminCall = adminAt(adminUrl);

/** Deletes a test's namespace and everything in it, through `call`: the test broker's admin API unless told otherwise. */
export const deleteNamespace = (namespace: string, call: AdminCall = admin): Promise<void> => deleteNamespaceThrough(namespace, call);

/** Namespaces this test file created, deleted after it (test/setup/delete-namespaces.ts). */
const created = new Set<string>();

/**
 * A new namespace under `public`: a test's own topics, with nothing left
 * over from other runs. Producer deduplication is on, as `sheaf setup` sets it.
 */
export async function freshNamespace(): Promise<string> {
  const namespace = testNamespaceName();
  await admin('PUT', `namespaces/public/${namespace}`);
  created.add(namespace);
  await admin('POST', `namespaces/public/${namespace}/deduplication`, true);
  return namespace;
}

/** Deletes every namespace this file created that still exists. */
export async function deleteCreatedNamespaces(): Promise<void> {
  for (const namespace of [...created]) {
    created.delete(namespace);
    await deleteNamespace(namespace).catch((error: unknown) => {
      if (!String(error).includes('404')) throw error;
    });
  }
}

export async function pulsarTransport(options: Partial<PulsarTransportOptions> = {}): Promise<PulsarTransport> {
  return new PulsarTransport({
    brokerServiceUrl: pulsarUrl(),
    logger: testLogger,
    nackRedeliveryDelayMs: 100,
    namespace: await freshNamespace(),
    connectThroughServiceUrl: inject('pulsarThroughServiceUrl'),
    ...options,
  });
}

declare module 'vitest' {
  export interface ProvidedContext {
    pulsarUrl: string;
    pulsarAdminUrl: string;
    pulsarThroughServiceUrl: boolean;
  }
}

/**
 * Publishes one entry with metadata and payload exactly as given (no client
 * checks), as a buggy or foreign producer could: for tests of what consumers
 * do with entries they cannot decode.
 */
export async function publishRawEntry(
  topic: string,
  metadata: Omit<MessageMetadata, 'producer_name' | 'sequence_id' | 'publish_time'>,
  payload: Uint8Array,
): Promise<void> {
  const client = new PulsarClient({
    serviceUrl: pulsarUrl(),
    logger: testLogger,
    connectTimeoutMs: 10_000,
    operationTimeoutMs: 10_000,
    keepAliveIntervalMs: 30_000,
    connectThroughServiceUrl: inject('pulsarThroughServiceUrl'),
  });
  try {
    const connection = await client.lookup(topic);
    const producerId = client.newId();
    const receipt = new Promise<void>((resolve, reject) => {
      connection.registerProducer(producerId, {
        onFrame: (frame) =>
          frame.command.type === CommandType.SEND_RECEIPT ? resolve() : reject(new Error(`raw send: ${JSON.stringify(frame.command)}`)),
        onConnectionClosed: reject,
      });
    });
    const requestId = connection.newRequestId();
    const created = await connection.request(
      { type: CommandType.PRODUCER, producer: { topic, producer_id: producerId, request_id: requestId } },
      requestId,
    );
    const name = created.producer_success!.producer_name;
    connection.sendPayload(
      { type: CommandType.SEND, send: { producer_id: producerId, sequence_id: 0, num_messages: metadata.num_messages_in_batch ?? 1 } },
      { producer_name: name, sequence_id: 0, publish_time: Date.now(), ...metadata },
      payload,
    );
    await receipt;
  } finally {
    await client.close();
  }
}
