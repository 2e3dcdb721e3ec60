import { describe, expect, test, vi } from 'vitest';
import { settledTopic } from '../../src/topics.js';
import { InMemoryTransport } from '../../src/transport/memory/in-memory-transport.js';
import { MAX_SHARED_TASK_ID_LENGTH, decodeSettled, encodeSettled, type SettledAttemptTuple } from '../../src/wire/settled-envelope.js';
import { SettledAttempts } from '../../src/worker/settled-attempts.js';
import { SettledFeed } from '../../src/worker/settled-feed.js';
import { testLogger } from '../support/logger.js';
import { ManualClock } from '../support/manual-clock.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('settled-attempts messages', () => {
  test('round trip', () => {
    const attempts: SettledAttemptTuple[] = [
      ['a', 0, 0, 0],
      ['b', 1, 3, 2],
    ];
    expect(decodeSettled(encodeSettled(attempts))).toEqual({ attempts });
  });

  test('next groups travel in a field of their own: the attempts stay four-element tuples for workers that know no more', () => {
    const attempts: SettledAttemptTuple[] = [
      ['a', 0, 0, 0],
      ['b', 0, 1, 0, 'g-1'],
    ];
    const encoded = encodeSettled(attempts);
    expect(JSON.parse(new TextDecoder().decode(encoded))).toMatchObject({
      attempts: [
        ['a', 0, 0, 0],
        ['b', 0, 1, 0],
      ],
      next: [[1, 'g-1']],
    });
    expect(decodeSettled(encoded)).toEqual({ attempts });
    expect(decodeSettled(bytes('{"v":1,"kind":"settled","attempts":[["a",0,0,0]],"next":[[1,"g"]]}'))).toEqual({
      problem: 'next: index 1 names no attempt (1 attempts)',
    });
  });

  test.each([
    ['not JSON', bytes('{'), /not JSON/],
    ['not UTF-8', new Uint8Array([0xff, 0xfe]), /not JSON/],
    ['another kind', bytes('{"v":1,"kind":"task","attempts":[["a",0,0,0]]}'), /kind/],
    ['a negative index', bytes('{"v":1,"kind":"settled","attempts":[["a",0,-1,0]]}'), /attempts/],
    ['a task id too long', encodeSettled([['x'.repeat(MAX_SHARED_TASK_ID_LENGTH + 1), 0, 0, 0]]), /attempts/],
    ['no attempts', bytes('{"v":1,"kind":"settled","attempts":[]}'), /attempts/],
  ])('%s: named, never thrown', (_name, payload, problem) => {
    const decoded = decodeSettled(payload);
    expect('problem' in decoded && decoded.problem).toMatch(problem);
  });
});

describe('SettledFeed', () => {
  test("one worker's announcements reach the other; its own are skipped; a message that is not one is ignored, and reading goes on", async () => {
    const transport = new InMemoryTransport();
    const a = (await SettledFeed.open(transport, 'Echo', testLogger))!;
    const b = (await SettledFeed.open(transport, 'Echo', testLogger))!;
    const heardByA: SettledAttemptTuple[] = [];
    const heardByB: SettledAttemptTuple[] = [];
    a.start((attempt) => heardByA.push(attempt));
    b.start((attempt) => heardByB.push(attempt));
    const stranger = await transport.createProducer(settledTopic('Echo'));
    await stranger.send({ payload: bytes('not an announcement') });
    a.announce(['t1', 0, 2, 0]);
    a.announce(['t2', 1, 0, 1, 'group-b']);
    a.announce(['x'.repeat(MAX_SHARED_TASK_ID_LENGTH + 1), 0, 0, 0]); // not shared: too long to accept
    await vi.waitFor(() => expect(heardByB).toHaveLength(2));
    expect(heardByB).toEqual([
      ['t1', 0, 2, 0],
      ['t2', 1, 0, 1, 'group-b'],
    ]);
    expect(heardByA).toEqual([]);
    const cache = new SettledAttempts(10, 60_000, new ManualClock());
    for (const attempt of heardByB) cache.addShared(attempt);
    expect(cache.settled({ taskId: 't1', retrySequence: 0, retryIndex: 1 })).toBe(true);
    expect(cache.settled({ taskId: 't1', retrySequence: 0, retryIndex: 3 })).toBe(false);
    await Promise.all([a.close(), b.close(), stranger.close()]);
    await transport.close();
  });

  test('a failed attempt is announced at the end of the turn, with the others pending, in one message', async () => {
    const transport = new InMemoryTransport();
    const sent: number[] = [];
    const createProducer = transport.createProducer.bind(transport);
    transport.createProducer = async (topic, options) => {
      const producer = await createProducer(topic, options);
      const send = producer.send.bind(producer);
      producer.send = (message) => {
        const decoded = decodeSettled(message.payload);
        sent.push('attempts' in decoded ? decoded.attempts.length : -1);
        return send(message);
      };
      return producer;
    };
    const feed = (await SettledFeed.open(transport, 'Echo', testLogger))!;
    feed.announce(['ok-1', 0, 0, 0]);
    await Promise.resolve();
    expect(sent).toEqual([]); // a success waits for the flush interval
    feed.announce(['failed-1', 0, 0, 1], true);
    feed.announce(['failed-2', 0, 0, 1], true);
    expect(sent).toEqual([]); // not before the batch's other settlements of this turn
    await Promise.resolve();
    expect(sent).toEqual([3]);
    await feed.close();
    await transport.close();
  });

  test('a transport that refuses the topic leaves the worker without the feed, and says so', async () => {
    const transport = new InMemoryTransport();
    transport.createProducer = () => Promise.reject(new Error('not authorized to produce'));
    const warnings: unknown[] = [];
    const logger = testLogger.child({});
    logger.warn = ((...args: unknown[]) => warnings.push(args)) as typeof logger.warn;
    expect(await SettledFeed.open(transport, 'Echo', logger)).toBeNull();
    expect(JSON.stringify(warnings)).toContain('sheaf-settled-Echo');
    await transport.close();
  });
});
