/**
 * Sheaf's Pulsar client against a simulated broker (test/support/simulated-broker.ts):
 * permits counted as the broker counts them, hostile bytes, size limits,
 * chunking, send timeouts, back-pressure and guarded lifecycles.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { MessageTooLargeError, SendTimeoutError } from '../../src/errors.js';
import { PulsarClient } from '../../src/transport/pulsar/client.js';
import { CommandType, CompressionType, ValidationError, type MessageMetadata } from '../../src/transport/pulsar/commands.js';
import { compress } from '../../src/transport/pulsar/compression.js';
import { PartitionConsumer, type PulsarConsumer } from '../../src/transport/pulsar/consumer.js';
import { encodeBatchPayload } from '../../src/transport/pulsar/frames.js';
import { PulsarTransport, type PulsarTransportOptions } from '../../src/transport/pulsar/pulsar-transport.js';
import type { Consumer, ReceivedMessage } from '../../src/transport/transport.js';
import { testLogger } from '../support/logger.js';
import { SimulatedBroker, type SimulatedEntry, type SimulatedOptions } from '../support/simulated-broker.js';

const TOPIC = 'persistent://public/default/simulated';
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function simulated(options: SimulatedOptions = {}): Promise<SimulatedBroker> {
  const broker = await new SimulatedBroker(options).start();
  cleanups.push(() => broker.stop());
  return broker;
}

function transport(broker: SimulatedBroker, options: Partial<PulsarTransportOptions> = {}): PulsarTransport {
  const t = new PulsarTransport({ brokerServiceUrl: broker.url, logger: testLogger, operationTimeoutSeconds: 5, ...options });
  cleanups.push(() => t.close());
  return t;
}

const meta = (extra: Partial<MessageMetadata> = {}): MessageMetadata => ({ producer_name: 'p', sequence_id: 0, publish_time: 1, ...extra });

function batchEntry(first: number, count: number, extra: Partial<MessageMetadata> = {}): SimulatedEntry {
  const payload = encodeBatchPayload(
    [...Array(count).keys()].map((k) => ({
      metadata: { payload_size: 0, properties: [{ key: 'i', value: String(first + k) }] },
      payload: Buffer.from(`message ${first + k}`),
    })),
  );
  return { metadata: meta({ num_messages_in_batch: count, ...extra }), payload, count };
}

async function receiveAll(consumer: Consumer, count: number, timeoutMs = 10_000): Promise<ReceivedMessage[]> {
  const out: ReceivedMessage[] = [];
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    while (out.length < count) out.push(await consumer.receive(signal));
  } catch (error) {
    throw new Error(`received ${out.length} of ${count}: ${(error as Error).message}`);
  }
  return out;
}

describe('permits', () => {
  test('batches larger than the window never stall the consumer; its count ends equal to the broker’s', async () => {
    const broker = await simulated();
    const consumer = (await transport(broker).subscribe({ topic: TOPIC, subscription: 's', maxUnacked: 15 })) as PulsarConsumer;
    // 60 entries of 10: every FLOW of 7 or 8 permits lets a whole 10-message entry through.
    for (let e = 0; e < 60; e++) broker.publish(batchEntry(e * 10, 10));
    const received: ReceivedMessage[] = [];
    while (received.length < 600) {
      const [m] = await receiveAll(consumer, 1);
      received.push(m!);
      await consumer.ack(m!);
    }
    expect(new Set(received.map((m) => m.properties.i)).size).toBe(600);
    await vi.waitFor(() => expect(consumer.permits).toEqual([broker.permits]));
    expect(broker.permits).toBeLessThanOrEqual(15);
  });
});

describe('acks across a reconnect', () => {
  test('a batch entry delivered before a reconnect is acked only once every one of its messages is', async () => {
    const broker = await simulated();
    const t = transport(broker);
    const consumer = await t.subscribe({ topic: TOPIC, subscription: 's', maxUnacked: 100 });
    broker.publish(batchEntry(0, 3));
    const [first, second, third] = await receiveAll(consumer, 3);
    // The connection drops: the broker redelivers the entry to whoever subscribes, so the copies held here are stale.
    for (const socket of broker.fake.openSockets) socket.destroy();
    await vi.waitFor(() => expect(broker.subscribes).toHaveLength(2));
    await vi.waitFor(() => expect(broker.fake.received.filter((c) => c.type === CommandType.FLOW)).toHaveLength(2));
    // One stale message settled must not ack the whole entry: its two others never ran here.
    await consumer.ack(first!);
    consumer.nack(second!, 0);
    await consumer.ack(third!);
    const probe = await t.createProducer(`${TOPIC}-probe`);
    // A round trip on the same connection: an ACK queued before it would have reached the broker by its receipt.
    await probe.send({ payload: Buffer.from('turn') });
    expect(broker.acks).toEqual([]);
    // Delivered again, all settled: acked once, whole.
    broker.publish(batchEntry(0, 3));
    const again = await receiveAll(consumer, 3);
    await consumer.ackAll(again);
    await vi.waitFor(() => expect(broker.acks).toHaveLength(1));
  });

  test('a stale entry whose messages are all acked is acked (the work is done; the broker need not redeliver it)', async () => {
    const broker = await simulated();
    const consumer = await transport(broker).subscribe({ topic: TOPIC, subscription: 's', maxUnacked: 100 });
    broker.publish(batchEntry(0, 2));
    const received = await receiveAll(consumer, 2);
    for (const socket of broker.fake.openSockets) socket.destroy();
    await vi.waitFor(() => expect(broker.fake.received.filter((c) => c.type === CommandType.FLOW)).toHaveLength(2));
    await consumer.ack(received[0]!);
    await consumer.ack(received[1]!);
    await vi.waitFor(() => expect(broker.acks.map((a) => Number(a.id.entryId))).toEqual([0]));
  });
});

describe('nothing from the network throws', () => {
  test('undecodable entries are handed over marked, acked with their validation error; the rest flow on', async () => {
    const broker = await simulated();
    const consumer = await transport(broker).subscribe({ topic: TOPIC, subscription: 's', maxUnacked: 100 });
    broker.publish(
      { metadata: meta({ encryption_keys: [{ key: 'k', value: Buffer.from('v') }] }), payload: Buffer.from('secret'), count: 1 },
      { metadata: meta({ compression: CompressionType.ZLIB, uncompressed_size: 50 }), payload: Buffer.from('not zlib'), count: 1 },
      { metadata: meta(), payload: Buffer.from('crc'), count: 1, mutate: (f) => (f.writeUInt8(f[f.length - 1]! ^ 1, f.length - 1), f) },
      { metadata: meta(), payload: Buffer.from('fine'), count: 1 },
    );
    const received = await receiveAll(consumer, 4);
    expect(received.map((m) => m.undecodable === undefined)).toEqual([false, false, false, true]);
    expect(received[0]!.undecodable).toMatch(/encrypted/);
    expect(Buffer.from(received[0]!.payload).toString()).toBe('secret');
    for (const m of received) await consumer.ack(m);
    await vi.waitFor(() => expect(broker.acks).toHaveLength(4));
    const byEntry = [...broker.acks].sort((a, b) => Number(a.id.entryId) - Number(b.id.entryId));
    expect(byEntry.map((a) => a.validationError)).toEqual([
      ValidationError.DecryptionError,
      ValidationError.DecompressionError,
      ValidationError.ChecksumMismatch,
      undefined,
    ]);
  });

  test('fuzz: mutated and truncated entries never escape as exceptions; good messages keep arriving', async () => {
    const broker = await simulated();
    const consumer = await transport(broker).subscribe({ topic: TOPIC, subscription: 's', maxUnacked: 50 });
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown): number => uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    cleanups.push(async () => process.off('uncaughtException', onUncaught));
    let seed = 42;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const plain = encodeBatchPayload(
      [0, 1, 2].map((k) => ({ metadata: { payload_size: 0, partition_key: `k${k}` }, payload: Buffer.from(`m${k}`.repeat(20)) })),
    );
    const codecs = [
      [CompressionType.NONE, plain],
      [CompressionType.LZ4, compress('lz4', plain)],
      [CompressionType.ZLIB, compress('zlib', plain)],
      [CompressionType.SNAPPY, compress('snappy', plain)],
    ] as const;
    const ROUNDS = 400;
    for (let r = 0; r < ROUNDS; r++) {
      const [compression, payload] = codecs[r % codecs.length]!;
      const headerless = (f: Buffer): Buffer => {
        // Mutate after the command, so the frame still routes to the consumer: metadata, checksum, payload.
        const start = 8 + f.readUInt32BE(4);
        const copy = Buffer.from(f);
        for (let k = 0, n = 1 + random(4); k < n; k++) {
          const at = start + random(copy.length - start);
          copy[at] = copy[at]! ^ (1 + random(255));
        }
        if (random(4) === 0) {
          const cut = start + random(copy.length - start);
          const truncated = copy.subarray(0, cut);
          truncated.writeUInt32BE(truncated.length - 4, 0);
          return truncated;
        }
        return copy;
      };
      broker.publish({
        metadata: meta({ num_messages_in_batch: 3, compression, uncompressed_size: plain.length }),
        payload,
        count: 3,
        mutate: headerless,
      });
      // A good message after each bad one: the connection and the consumer are still serving.
      broker.publish({ metadata: meta({ properties: [{ key: 'sentinel', value: String(r) }] }), payload: Buffer.from('ok'), count: 1 });
    }
    const sentinels = new Set<string>();
    while (sentinels.size < ROUNDS) {
      const [m] = await receiveAll(consumer, 1, 20_000);
      if (m!.properties.sentinel !== undefined) sentinels.add(m!.properties.sentinel);
      else if (m!.undecodable === undefined) expect(m!.payload.length).toBeGreaterThan(0);
      await consumer.ack(m!);
    }
    expect(uncaught).toEqual([]);
  }, 60_000);
});

describe('size limits and chunking', () => {
  test('a send over the broker’s maxMessageSize rejects at once, naming size and limit; nothing is sent', async () => {
    const broker = await simulated({ maxMessageSize: 1000 });
    const producer = await transport(broker).createProducer(TOPIC);
    const error = await producer.send({ payload: Buffer.alloc(2000) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MessageTooLargeError);
    expect((error as MessageTooLargeError).message).toMatch(/2000 bytes .* limit of 1000 bytes/);
    // The producer still works, and the big one never went out.
    await producer.send({ payload: Buffer.alloc(10) });
    expect(broker.sends).toHaveLength(1);
  });

  test('with chunking, a large message goes as chunks of one uuid; the send resolves once the last is confirmed', async () => {
    const broker = await simulated({ maxMessageSize: 1000 });
    const producer = await transport(broker, { producer: { chunking: true } }).createProducer(TOPIC);
    await producer.send({ payload: Buffer.alloc(2500, 7) });
    expect(broker.sends).toHaveLength(3);
  });
});

describe('timeouts and lifecycles', () => {
  test('a send the broker never confirms fails with SendTimeoutError; close() still ends', async () => {
    const broker = await simulated({ receipts: false });
    const producer = await transport(broker, { producer: { sendTimeoutSeconds: 0.3 } }).createProducer(TOPIC);
    const started = Date.now();
    const error = await producer.send({ payload: Buffer.from('x') }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SendTimeoutError);
    expect(Date.now() - started).toBeLessThan(5000);
    await producer.close();
  });

  test('concurrent close() calls all resolve, for producers and consumers', async () => {
    const broker = await simulated();
    const t = transport(broker);
    const producer = await t.createProducer(TOPIC);
    const consumer = await t.subscribe({ topic: TOPIC, subscription: 's', maxUnacked: 10 });
    await Promise.all([producer.close(), producer.close(), consumer.close(), consumer.close()]);
    expect(broker.closedProducers).toHaveLength(1);
  });

  test('a subscribe that completes after close() is undone on the broker, never becomes ready', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const broker = await simulated({ holdSubscribe: () => held });
    const client = new PulsarClient({
      serviceUrl: broker.url,
      logger: testLogger,
      connectTimeoutMs: 2000,
      operationTimeoutMs: 5000,
      keepAliveIntervalMs: 30_000,
    });
    cleanups.push(() => client.close());
    const part = new PartitionConsumer(
      client,
      TOPIC,
      -1,
      10,
      { subscription: 's', subscriptionType: 'shared', maxUnacked: 10, nackRedeliveryDelayMs: 10 },
      {
        deliver: () => undefined,
        dropQueued: () => 0,
      },
    );
    const connecting = part.connect();
    await vi.waitFor(() => expect(broker.subscribes).toHaveLength(1));
    const closing = part.close();
    release();
    await connecting;
    await closing;
    await vi.waitFor(() => expect(broker.fake.received.some((c) => c.type === CommandType.CLOSE_CONSUMER)).toBe(true));
    expect(broker.fake.received.some((c) => c.type === CommandType.FLOW)).toBe(false);
  });

  test('a partitioned producer that cannot open every partition closes the ones it opened', async () => {
    const broker = await simulated({ partitions: 3, refuseProducer: (topic) => topic.endsWith('-partition-1') });
    await expect(transport(broker).createProducer(TOPIC)).rejects.toThrow(/refused/);
    await vi.waitFor(() => expect(broker.closedProducers).toHaveLength(2));
  });

  test('back-pressure: a broker that stops reading holds sends in the client, not in an ever-growing socket buffer', async () => {
    const broker = await simulated();
    const t = transport(broker, { producer: { maxPendingMessages: 200 } });
    const producer = await t.createProducer(TOPIC);
    for (const socket of broker.fake.openSockets) socket.pause();
    const sends = [...Array(100).keys()].map(() => producer.send({ payload: Buffer.alloc(256 * 1024) }));
    await new Promise<void>((resolve) => setImmediate(resolve));
    // The client's socket buffer stays near its high-water mark: the rest waits in the producer.
    const clientSockets = await clientSocketsOf(t);
    expect(Math.max(...clientSockets.map((s) => s.writableLength))).toBeLessThan(4 * 1024 * 1024);
    for (const socket of broker.fake.openSockets) socket.resume();
    await Promise.all(sends);
    expect(broker.sends).toHaveLength(100);
  });
});

describe('connect timeout', () => {
  let listener: ChildProcess | null = null;
  afterEach(() => listener?.kill('SIGKILL'));

  test('covers a TCP connect that is never answered', async () => {
    // A listener that never accepts, its backlog full: further SYNs go unanswered.
    listener = spawn('python3', [
      '-c',
      'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(120)',
    ]);
    const port = await new Promise<number>((resolve) =>
      listener!.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))),
    );
    const fillers: Socket[] = [];
    cleanups.push(async () => fillers.forEach((s) => s.destroy()));
    // The one connection the kernel completes without an accept(): after it, the backlog is full.
    for (let i = 0; i < 1; i++) {
      const socket = connect(port, '127.0.0.1').on('error', () => undefined);
      fillers.push(socket);
      await new Promise((resolve) => socket.once('connect', resolve));
    }
    const client = new PulsarClient({
      serviceUrl: `pulsar://127.0.0.1:${port}`,
      logger: testLogger,
      connectTimeoutMs: 500,
      operationTimeoutMs: 500,
      keepAliveIntervalMs: 30_000,
    });
    cleanups.push(() => client.close());
    const started = Date.now();
    await expect(client.partitions(TOPIC)).rejects.toThrow(/timed out after 500 ms/);
    expect(Date.now() - started).toBeLessThan(3000);
  });
});

async function clientSocketsOf(t: PulsarTransport): Promise<Socket[]> {
  const client = (t as unknown as { client: PulsarClient }).client;
  const connections = [...(client as unknown as { connections: Map<string, Promise<unknown>> }).connections.values()];
  const opened = await Promise.all(connections);
  return opened.map((c) => (c as { socket: Socket }).socket);
}

describe('a service URL with several hosts', () => {
  /** A port on loopback where nothing listens: a connect is refused at once. */
  async function closedPort(): Promise<number> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise((resolve) => server.close(resolve));
    return port;
  }

  test('a host that is down is passed over, at start and for every later lookup', async () => {
    const broker = await simulated();
    const down = await closedPort();
    const t = transport(broker, { brokerServiceUrl: `pulsar://127.0.0.1:${down},${broker.url.replace('pulsar://', '')}` });
    for (let i = 0; i < 3; i++) {
      const producer = await t.createProducer(`${TOPIC}-${i}`);
      await producer.send({ payload: Buffer.from('x') });
      await producer.close();
    }
    expect(t.connectionProblem()).toBeNull();
  });

  test('when no host answers, the error names every one of them', async () => {
    const [a, b] = [await closedPort(), await closedPort()];
    const client = new PulsarClient({
      serviceUrl: `pulsar://127.0.0.1:${a},127.0.0.1:${b}`,
      logger: testLogger,
      connectTimeoutMs: 1000,
      operationTimeoutMs: 1000,
      keepAliveIntervalMs: 30_000,
    });
    cleanups.push(() => client.close());
    const error = await client.partitions(TOPIC).catch((e: unknown) => e as Error);
    expect(String(error)).toMatch(new RegExp(`no host of the service URL could be reached: .*127\\.0\\.0\\.1:${a}.*127\\.0\\.0\\.1:${b}`));
    expect(client.connectionProblem).toMatch(/no host of the service URL/);
  });
});

/** PulsarApi.proto's ServerError codes. */
const SERVICE_NOT_READY = 6;
const AUTHORIZATION_ERROR = 4;

describe('a broker that is not ready for a topic yet (a bundle being unloaded)', () => {
  test('creating a producer is retried with a new lookup while the broker answers ServiceNotReady', async () => {
    const errors = [SERVICE_NOT_READY, SERVICE_NOT_READY];
    const broker = await simulated({ producerErrors: errors });
    const producer = await transport(broker).createProducer(TOPIC);
    expect(errors).toEqual([]);
    await producer.send({ payload: Buffer.from('x') });
  });

  test('an error retrying cannot mend (a refused role) fails at once', async () => {
    const broker = await simulated({ producerErrors: [AUTHORIZATION_ERROR] });
    const started = Date.now();
    await expect(transport(broker).createProducer(TOPIC)).rejects.toThrow(/AuthorizationError/);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
