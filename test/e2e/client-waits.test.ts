import 'reflect-metadata';
import { afterEach, describe, expect, test } from 'vitest';
import { SheafClient } from '../../src/client/client.js';
import { LifecycleError, ResultTimeoutError, SendTimeoutError, TaskTimeoutError } from '../../src/errors.js';
import { Batch } from '../../src/service/decorators.js';
import { InMemoryTransport } from '../../src/transport/memory/in-memory-transport.js';
import type { Producer, Transport } from '../../src/transport/transport.js';
import { Task } from '../../src/worker/context.js';
import { testLogger } from '../support/logger.js';
import { startSystem, type System } from '../support/system.js';
import { transportTargets } from '../support/transports.js';
import { admin, noPulsar, pulsarTransport } from '../support/pulsar.js';

interface Notes {
  add(text: string): Promise<string>;
}

class NotesImpl {
  add(_text: string): void {}
  @Batch('add')
  async addMany(tasks: Map<string, string>): Promise<Map<string, string>> {
    const key = Task.batch().batchKey;
    return new Map([...tasks].map(([id, text]) => [id, `${key ?? '-'}:${text}`]));
  }
}

describe('a client that nobody answers', () => {
  const clients: SheafClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
  });

  test('result({ timeoutMs }) rejects with ResultTimeoutError naming the task, service and wait; the client forgets the task', async () => {
    const client = await SheafClient.connect({ transport: new InMemoryTransport(), logger: testLogger });
    clients.push(client);
    const notes = client.service<Notes>('Notes');
    const handle = await client.dispatch(notes).add('x');
    const error = (await handle.result({ timeoutMs: 50 }).catch((e: unknown) => e)) as ResultTimeoutError;
    expect(error).toBeInstanceOf(ResultTimeoutError);
    expect(error).toBeInstanceOf(TaskTimeoutError);
    expect(error.message).toMatch(new RegExp(`no result for task Notes\\.add \\(${handle.id}\\) after 50 ms; the task is not cancelled`));
    expect(client.pendingTasks).toBe(0);
    // Asking again gives the same answer at once.
    await expect(handle.result()).rejects.toBe(error);
  });

  test('the client default bounds `await stub.method()`; an abort signal ends one wait', async () => {
    const client = await SheafClient.connect({ transport: new InMemoryTransport(), logger: testLogger, defaultResultTimeoutSeconds: 0.05 });
    clients.push(client);
    await expect(client.service<Notes>('Notes').add('x')).rejects.toBeInstanceOf(ResultTimeoutError);
    const handle = await client.dispatch(client.service<Notes>('Notes')).add('y');
    const controller = new AbortController();
    const waiting = handle.result({ signal: controller.signal, timeoutMs: 10_000 });
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
  });

  test('a send the transport never completes rejects with SendTimeoutError', async () => {
    const stuck: Transport = Object.assign(new InMemoryTransport(), {
      createProducer: async (topic: string): Promise<Producer> => ({
        topic,
        lastSequenceId: -1,
        send: () => new Promise<string>(() => undefined),
        close: async () => undefined,
      }),
    });
    const client = await SheafClient.connect({ transport: stuck, logger: testLogger, sendTimeoutSeconds: 0.05 });
    clients.push(client);
    await expect(client.dispatch(client.service<Notes>('Notes')).add('x')).rejects.toBeInstanceOf(SendTimeoutError);
    expect(client.pendingTasks).toBe(0);
  });
});

for (const target of transportTargets()) {
  describe.skipIf(target.skip)(`dispatch options (${target.name})`, () => {
    let system: System | undefined;
    afterEach(async () => {
      await system?.stop();
      system = undefined;
    });

    test('fireAndForget: the task runs, no result is sent, the client keeps nothing', async () => {
      system = await startSystem(
        [{ name: 'Notes', executor: { factory: () => new NotesImpl(), batch: { maxMessages: 500, maxSeconds: 0.05 } } }],
        await target.create(),
      );
      const count = target.name === 'inMemory' ? 100_000 : 5_000;
      const { settlements, worker } = system;
      const allSettled = new Promise<void>((resolve) => worker.events.on('task', () => settlements.length >= count && resolve()));
      const notes = system.client.dispatch(system.client.service<Notes>('Notes'), { fireAndForget: true });
      const handles = [];
      for (let i = 0; i < count; i += 1000)
        handles.push(...(await Promise.all([...Array(1000).keys()].map((k) => notes.add(String(i + k))))));
      expect(system.client.pendingTasks).toBe(0);
      await expect(handles[0]!.result()).rejects.toBeInstanceOf(LifecycleError);
      // Every task ran and settled without a result.
      await allSettled;
      expect(settlements).toHaveLength(count);
      expect(settlements.every((s) => s.settlement === 'succeeded')).toBe(true);
      expect(system.client.pendingTasks).toBe(0);
    }, 120_000);

    test('a per-dispatch batch key groups tasks without a stub per key', async () => {
      system = await startSystem(
        [{ name: 'Notes', executor: { factory: () => new NotesImpl(), batch: { maxMessages: 3, maxSeconds: 5 } } }],
        await target.create(),
      );
      const notes = system.client.service<Notes>('Notes');
      const handles = await Promise.all([
        ...['a', 'b', 'c'].map((t) => system!.client.dispatch(notes, { batchKey: 'k1' }).add(t)),
        ...['d', 'e', 'f'].map((t) => system!.client.dispatch(notes, { batchKey: 'k2' }).add(t)),
      ]);
      expect(await Promise.all(handles.map((h) => h.result()))).toEqual(['k1:a', 'k1:b', 'k1:c', 'k2:d', 'k2:e', 'k2:f']);
      expect((await system.batched(6)).map((b) => [b.batchKey, b.size]).sort()).toEqual([
        ['k1', 3],
        ['k2', 3],
      ]);
    });
  });
}

describe.skipIf(noPulsar())('result subscriptions on the broker (pulsar)', () => {
  test('a client with a generated name deletes its result subscription on close; a named one keeps it', async () => {
    const transport = await pulsarTransport();
    try {
      const subscriptionsOf = async (client: SheafClient): Promise<string[]> =>
        (await admin('GET', `persistent/public/${transport.namespace}/sheaf-results-${client.name}/subscriptions`)) as string[];
      const generated = await SheafClient.connect({ transport, logger: testLogger });
      const named = await SheafClient.connect({ transport, logger: testLogger, name: `named-${Date.now()}` });
      expect(await subscriptionsOf(generated)).toEqual(['sheaf-client']);
      await generated.close();
      await named.close();
      expect(await subscriptionsOf(generated)).toEqual([]);
      expect(await subscriptionsOf(named)).toEqual(['sheaf-client']);
    } finally {
      await transport.close();
    }
  });
});
