/**
 * Fencing of exclusive producers on a real broker: a producer whose process
 * froze (its connection closed by the broker, unnoticed by the client) while
 * another took the topic over must store nothing after it wakes. Pulsar's
 * topic epoch does it; Sheaf's producer must send its epoch on reconnect and
 * treat the refusal as final.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { ProducerBusyError, ProducerFencedError } from '../../src/errors.js';
import type { PulsarTransport } from '../../src/transport/pulsar/pulsar-transport.js';
import type { Producer } from '../../src/transport/transport.js';
import { noPulsar, pulsarTransport, pulsarUrl } from '../support/pulsar.js';
import { PulsarTestProxy } from '../support/pulsar-proxy.js';

const text = (payload: Uint8Array): string => new TextDecoder().decode(payload);
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Takes the topic as soon as the broker has let the old holder go (bounded: the broker notices a closed connection at once). */
async function takeOver(transport: PulsarTransport, topic: string): Promise<Producer> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await transport.createProducer(topic, { access: 'exclusive' });
    } catch (error) {
      if (!(error instanceof ProducerBusyError) || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

describe.skipIf(noPulsar())('exclusive producers on Pulsar', () => {
  const opened: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    for (const o of opened.splice(0).reverse()) await o.close();
  });

  /** A transport straight to the broker, and one on the same namespace through a proxy the test controls. */
  async function twoTransports(): Promise<{ proxy: PulsarTestProxy; direct: PulsarTransport; proxied: PulsarTransport }> {
    const { hostname, port } = new URL(pulsarUrl().replace(/^pulsar:/, 'http:'));
    const proxy = new PulsarTestProxy(hostname, Number(port));
    opened.push({ close: () => proxy.stop() });
    const viaProxy = await proxy.start();
    const direct = await pulsarTransport();
    opened.push(direct);
    const namespace = direct.topicName('x').split('/').slice(-2, -1)[0]!;
    const proxied = await pulsarTransport({ brokerServiceUrl: viaProxy, namespace });
    opened.push(proxied);
    return { proxy, direct, proxied };
  }

  test('a frozen holder that wakes after another took the topic over is fenced: what it sends is refused, never stored', async () => {
    const { proxy, direct, proxied: frozenSide } = await twoTransports();
    const topic = 'fenced-topic';
    const reader = await direct.subscribe({ topic, subscription: 'reader', maxUnacked: 10 });

    const old = await frozenSide.createProducer(topic, { access: 'exclusive' });
    await old.send({ payload: bytes('old before freeze') });
    let fencedBy: Error | undefined;
    void old.fenced!.then((error) => (fencedBy = error));

    proxy.freeze();
    const successor = await takeOver(direct, topic);
    expect(successor.epoch).toBeGreaterThan(old.epoch!);
    await successor.send({ payload: bytes('successor 1') });

    // The old holder writes on, unaware; then wakes to its closed connection and reconnects with its old epoch.
    const stale = old.send({ payload: bytes('old after takeover') });
    stale.catch(() => undefined);
    proxy.wake();
    await expect(stale).rejects.toBeInstanceOf(ProducerFencedError);
    expect(await old.fenced).toBeInstanceOf(ProducerFencedError);
    expect(fencedBy).toBeInstanceOf(ProducerFencedError);
    await expect(old.send({ payload: bytes('old, once more') })).rejects.toBeInstanceOf(ProducerFencedError);

    await successor.send({ payload: bytes('successor 2') });
    const seen: string[] = [];
    while (!seen.includes('successor 2')) {
      const message = await reader.receive();
      seen.push(text(message.payload));
      await reader.ack(message);
    }
    expect(seen).toEqual(['old before freeze', 'successor 1', 'successor 2']);
  });

  test('a holder whose connection drops while nobody took over keeps the topic: same epoch, nothing lost', async () => {
    const { proxy, direct, proxied: holderSide } = await twoTransports();
    const topic = 'kept-topic';
    const reader = await direct.subscribe({ topic, subscription: 'reader', maxUnacked: 10 });
    const holder = await holderSide.createProducer(topic, { access: 'exclusive' });
    await holder.send({ payload: bytes('before the cut') });
    proxy.cutAll();
    await holder.send({ payload: bytes('after the cut') });
    const seen = [text((await reader.receive()).payload), text((await reader.receive()).payload)];
    expect(seen).toEqual(['before the cut', 'after the cut']);
    // Still the holder: nobody else may take the topic.
    await expect(direct.createProducer(topic, { access: 'exclusive' })).rejects.toBeInstanceOf(ProducerBusyError);
  });
});
