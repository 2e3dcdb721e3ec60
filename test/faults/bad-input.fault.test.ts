/**
 * Bad input among good tasks: thousands of malformed messages published
 * straight into the task topic, and poison tasks that always fail. Every bad
 * message lands on the dead-letter topic with its reason, every good task
 * completes, and the worker neither crashes nor stalls.
 */
import { expect, test } from 'vitest';
import { TaskFailedError } from '../../src/errors.js';
import { DEAD_LETTER_SUBSCRIPTION, deadLetterTopic, taskTopic } from '../../src/topics.js';
import { decodeDeadLetter, type DeadLetterReason } from '../../src/wire/envelopes.js';
import { rawTask } from '../support/tasks.js';
import { connectClient, dispatchAll, faultRun, pick, recordFigures, startWorker } from './support.js';

const MAX_BYTES = 65_536;

/** Deterministic pseudo-random numbers, so a failing run can be repeated. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

const good = (i: number) => rawTask(`fuzz-${i}`, 'Fault', 'work', [`${i}`]);

/** Each kind of malformed message, and the reason it must be dead-lettered with. */
const KINDS: Array<[string, DeadLetterReason, (i: number, rnd: () => number) => Uint8Array]> = [
  ['invalid JSON', 'undecodable', (i, rnd) => Buffer.from(`{"v":1,"kind":"task","taskId":"x${i}",${'{['.charAt(Math.floor(rnd() * 2))}`)],
  ['not UTF-8', 'undecodable', (_, rnd) => Buffer.from([0xff, 0xfe, ...[...Array(16)].map(() => Math.floor(rnd() * 256))])],
  ['empty', 'undecodable', () => new Uint8Array()],
  ['unknown version', 'undecodable', (i, rnd) => Buffer.from(JSON.stringify({ ...good(i), v: 2 + Math.floor(rnd() * 97) }))],
  ['missing fields', 'undecodable', (i) => Buffer.from(JSON.stringify({ v: 1, kind: 'task', taskId: `x${i}` }))],
  ['args not a list', 'undecodable', (i) => Buffer.from(JSON.stringify({ ...good(i), args: 'x' }))],
  ['unknown service', 'unknownService', (i) => Buffer.from(JSON.stringify({ ...good(i), service: 'Nowhere' }))],
  ['unknown method', 'unknownMethod', (i) => Buffer.from(JSON.stringify({ ...good(i), method: 'vanish' }))],
  ['wrong arity', 'wrongArguments', (i) => Buffer.from(JSON.stringify({ ...good(i), args: ['a', 'b'] }))],
  ['wrong type', 'wrongArguments', (i) => Buffer.from(JSON.stringify({ ...good(i), args: [42] }))],
];

test('malformed messages and poison tasks among good ones: each bad one dead-lettered with its reason, every good one done', async () => {
  const goodTotal = pick(20_000, 2_000);
  const badTotal = pick(5_000, 500);
  const poisonTotal = pick(20, 5);
  const faults = await faultRun(`concurrency: 4\n      batch: { maxMessages: 100, maxSeconds: 0.2, maxBytes: ${MAX_BYTES} }`);
  const worker = await startWorker(faults);
  const { client, transport, close } = await connectClient(faults);
  try {
    const producer = await transport.createProducer(taskTopic('Fault'));
    const rnd = random(7);
    const expected = new Map<DeadLetterReason, number>();
    const publishBad = (async () => {
      for (let i = 0; i < badTotal; i++) {
        const [, reason, make] = KINDS[i % KINDS.length]!;
        expected.set(reason, (expected.get(reason) ?? 0) + 1);
        await producer.send({ payload: make(i, rnd) });
      }
    })();
    const stub = client.service<{ work(input: string): Promise<string> }>('Fault', { meta: { batchKey: 'big' } });
    const poison = Promise.allSettled([...Array(poisonTotal)].map(() => stub.work('poison')));
    // A task larger than maxBytes is not bad: it runs in a batch of its own.
    const oversized = stub.work('x'.repeat(2 * MAX_BYTES));
    const { wrong } = await dispatchAll(
      client,
      goodTotal,
      (i) => `key-${i % 8}`,
      () => undefined,
    );
    await publishBad;
    expect(await oversized).toBe(`done ${'x'.repeat(2 * MAX_BYTES)}`);
    const poisoned = await poison;
    expect(
      poisoned.every(
        (p) =>
          p.status === 'rejected' &&
          p.reason instanceof TaskFailedError &&
          p.reason.reason === 'retriesExhausted' &&
          p.reason.attempts === 3,
      ),
    ).toBe(true);
    expected.set('retriesExhausted', poisonTotal);

    const dlq = await transport.subscribe({
      topic: deadLetterTopic('Fault'),
      subscription: DEAD_LETTER_SUBSCRIPTION,
      maxUnacked: badTotal + poisonTotal,
    });
    const seen = new Map<DeadLetterReason, number>();
    for (let i = 0; i < badTotal + poisonTotal; i++) {
      const letter = decodeDeadLetter((await dlq.receive()).payload);
      seen.set(letter.reason, (seen.get(letter.reason) ?? 0) + 1);
    }
    await dlq.close();
    await recordFigures('badInput', {
      goodTasks: goodTotal,
      malformed: badTotal,
      poisonTasks: poisonTotal,
      deadLettered: [...seen.values()].reduce((a, b) => a + b, 0),
      ...Object.fromEntries([...seen].map(([reason, n]) => [`dlq.${reason}`, n])),
      wrongResults: wrong,
    });
    expect(wrong).toBe(0);
    expect(Object.fromEntries(seen)).toEqual(Object.fromEntries(expected));
    expect(worker.child.exitCode).toBeNull();
  } finally {
    await close();
    worker.child.kill('SIGTERM');
    await worker.exited;
  }
});
