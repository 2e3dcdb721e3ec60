/**
 * Twins: a second copy of an attempt the worker already settled (a broker
 * redelivery after a lost ack, a retry message delivered twice) is acked
 * without running again; a new attempt of the same task still runs.
 */
import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { Batch } from '../../src/service/decorators.js';
import { Task } from '../../src/worker/context.js';
import { NonRetryableError } from '../../src/errors.js';
import { deadLetterTopic, taskTopic } from '../../src/topics.js';
import { encodeEnvelope } from '../../src/wire/envelopes.js';
import type { TaskReport } from '../../src/worker/events.js';
import { SheafWorker } from '../../src/worker/worker.js';
import { testLogger } from '../support/logger.js';
import { Counter, countingEcho, readDeadLetters, startSystem, type System } from '../support/system.js';
import { rawDeadLetter, rawTask } from '../support/tasks.js';
import { transportTargets } from '../support/transports.js';

/** Each call waits until two calls were made: two executions that run at the same time. */
function pairBarrier(): () => Promise<void> {
  let arrived = 0;
  let release: () => void = () => undefined;
  const both = new Promise<void>((resolve) => (release = resolve));
  return () => {
    arrived += 1;
    if (arrived === 2) release();
    return both;
  };
}

for (const target of transportTargets()) {
  describe.skipIf(target.skip)(`twins (${target.name})`, () => {
    let system: System | undefined;
    afterEach(async () => {
      await system?.stop();
      system = undefined;
    });

    test('a copy of a settled attempt is acked without running; the next attempt of the task runs', async () => {
      const executions = new Counter();
      const Echo = countingEcho(executions);
      system = await startSystem(
        [{ name: 'Echo', executor: { factory: () => new Echo(), batch: { maxMessages: 1, maxSeconds: 0.05 } } }],
        await target.create(),
      );
      const s = system;
      const producer = await s.transport.createProducer(taskTopic('Echo'));
      const settled = (n: number): Promise<TaskReport[]> =>
        new Promise((resolve) => {
          const check = (): void => {
            if (s.settlements.length < n) return;
            s.worker.events.off('task', check);
            resolve(s.settlements);
          };
          s.worker.events.on('task', check);
          check();
        });
      const taskId = randomUUID();
      const attempt = (retryIndex: number) => encodeEnvelope({ ...rawTask(taskId, 'Echo', 'echo', ['x']), retryIndex });
      await producer.send({ payload: attempt(0) });
      await settled(1);
      await producer.send({ payload: attempt(0) }); // the same attempt again: a twin
      await settled(2);
      await producer.send({ payload: attempt(1) }); // a retry: a new attempt
      await settled(3);
      await producer.send({ payload: attempt(1) }); // and its twin
      const reports = await settled(4);
      await producer.close();
      expect(reports.map((r) => [r.settlement, r.attempts])).toEqual([
        ['succeeded', 1],
        ['twin', 1],
        ['succeeded', 2],
        ['twin', 2],
      ]);
      expect(executions.get(taskId)).toBe(2);
      expect(s.worker.stats().Echo!.inFlight).toBe(0);
    });

    test('a copy that arrives while the worker still runs the original waits for it and is settled with its outcome', async () => {
      const executions = new Counter();
      let release: () => void = () => undefined;
      const running = new Promise<void>((resolve) => (release = resolve));
      let started: () => void = () => undefined;
      const firstStarted = new Promise<void>((resolve) => (started = resolve));
      class Slow {
        echo(_v: string): void {}
        @Batch('echo')
        async echoMany(tasks: Map<string, string>): Promise<Map<string, string>> {
          for (const id of tasks.keys()) executions.add(id);
          started();
          await running;
          return tasks;
        }
      }
      system = await startSystem(
        [{ name: 'Echo', executor: { factory: () => new Slow(), concurrency: 2, batch: { maxMessages: 1, maxSeconds: 0.05 } } }],
        await target.create(),
      );
      const s = system;
      const producer = await s.transport.createProducer(taskTopic('Echo'));
      const taskId = randomUUID();
      const payload = encodeEnvelope(rawTask(taskId, 'Echo', 'echo', ['x']));
      await producer.send({ payload });
      await firstStarted;
      await producer.send({ payload }); // the broker's redelivery, as after a lost connection
      // Both received: the copy waits beside the original instead of running.
      await vi.waitFor(() => expect(s.worker.stats().Echo!.inFlight).toBe(2));
      release();
      await new Promise<void>((resolve) => {
        const check = (): void => {
          if (s.settlements.length >= 2) resolve();
        };
        s.worker.events.on('task', check);
        check();
      });
      await producer.close();
      expect(s.settlements.map((r) => r.settlement)).toEqual(['succeeded', 'twin']);
      expect(executions.get(taskId)).toBe(1);
    });

    /**
     * Two workers of one service, each taking one task at a time (`maxUnacked: 1`), and two copies of one attempt
     * sent to them: both run it at once, as when the broker hands one delayed message to both, and neither can know
     * of the other's. Resolves with every task report once `count` are in.
     */
    async function copiesOnTwoWorkers(factory: () => object, count: number, executor: object = {}): Promise<TaskReport[]> {
      const service = {
        name: 'Echo',
        executor: { factory, concurrency: 1, maxUnacked: 1, batch: { maxMessages: 1, maxSeconds: 0.05 }, ...executor },
      };
      system = await startSystem([service], await target.create());
      const s = system;
      const other = new SheafWorker({ transport: s.transport, services: [service], logger: testLogger, name: 'other' });
      const otherReports: TaskReport[] = [];
      other.events.on('task', (r) => otherReports.push(r));
      await other.start();
      const producer = await s.transport.createProducer(taskTopic('Echo'));
      try {
        const payload = encodeEnvelope(rawTask(randomUUID(), 'Echo', 'echo', ['x']));
        await producer.send({ payload });
        await producer.send({ payload }); // the same attempt again, before either worker settled it
        await vi.waitFor(() => expect(s.settlements.length + otherReports.length).toBe(count), { timeout: 10_000 });
        return [...s.settlements, ...otherReports];
      } finally {
        await producer.close();
        await other.close();
      }
    }

    test('a copy run on two workers at once, failing for good, leaves one dead letter', async () => {
      const bothRunning = pairBarrier();
      class Failing {
        echo(_v: string): void {}
        @Batch('echo')
        async echoMany(_tasks: Map<string, string>): Promise<Map<string, string>> {
          await bothRunning();
          throw new NonRetryableError('fails for good');
        }
      }
      const reports = await copiesOnTwoWorkers(() => new Failing(), 2);
      expect(reports.map((r) => r.settlement).sort()).toEqual(['failed', 'twin']);
      // Both settled (their letters durable): a marker after them shows what the topic holds before it.
      const marker = rawDeadLetter(null, { detail: 'marker' });
      const letters = await system!.transport.createProducer(deadLetterTopic('Echo'));
      await letters.send({ payload: encodeEnvelope(marker) });
      await letters.close();
      const [letter, next] = await readDeadLetters(system!.transport, 'Echo', 2);
      expect(letter!.reason).toBe('nonRetryable');
      expect(next!.detail).toBe('marker');
    });

    test('copies of one attempt run on two workers at once: their two next attempts converge, one runs', async () => {
      const executions: number[] = []; // the retry index of each execution
      const bothRunning = pairBarrier();
      class FailsOnce {
        echo(_v: string): void {}
        @Batch('echo')
        async echoMany(tasks: Map<string, string>): Promise<Map<string, string>> {
          const retryIndex = Task.contextOf([...tasks.keys()][0]!).retryIndex;
          executions.push(retryIndex);
          if (retryIndex > 0) return tasks;
          await bothRunning();
          throw new Error('the first attempt fails');
        }
      }
      // No jitter: the two next attempts come due together, as copies of one retry do.
      const retry = { minimumSeconds: 0.5, maximumSeconds: 0.5, randomFactor: 0, maximumRetries: 3 };
      const reports = await copiesOnTwoWorkers(() => new FailsOnce(), 4, { retry });
      expect(reports.map((r) => r.settlement).sort()).toEqual(['retried', 'retried', 'succeeded', 'twin']);
      expect(executions.sort()).toEqual([0, 0, 1]);
    });

    for (const shared of [true, false]) {
      test(`a copy of an attempt another worker settled ${shared ? 'is acked without running (settledCache.shared)' : 'runs again when settled attempts are not shared'}`, async () => {
        const executions = new Counter();
        const Echo = countingEcho(executions);
        const service = {
          name: 'Echo',
          executor: { factory: () => new Echo(), batch: { maxMessages: 1, maxSeconds: 0.05 }, settledCache: { shared } },
        };
        system = await startSystem([service], await target.create());
        const s = system;
        const other = new SheafWorker({ transport: s.transport, services: [service], logger: testLogger, name: 'other' });
        const otherReports: TaskReport[] = [];
        await other.start();
        const workers = [
          { worker: s.worker, reports: s.settlements },
          { worker: other, reports: otherReports },
        ];
        other.events.on('task', (r) => otherReports.push(r));
        const producer = await s.transport.createProducer(taskTopic('Echo'));
        try {
          const taskId = randomUUID();
          const payload = encodeEnvelope(rawTask(taskId, 'Echo', 'echo', ['x']));
          await producer.send({ payload });
          await vi.waitFor(() => expect(s.settlements.length + otherReports.length).toBe(1));
          // The worker that ran it goes away; the copy can only reach the other one, which never saw the task.
          const ran = workers.find((w) => w.reports.length === 1)!;
          const remaining = workers.find((w) => w !== ran)!;
          await ran.worker.close();
          if (shared) await vi.waitFor(() => expect(remaining.worker.stats().Echo!.settledElsewhere).toBe(1));
          await producer.send({ payload }); // the broker's redelivery after it lost the ack
          await vi.waitFor(() => expect(remaining.reports).toHaveLength(1));
          expect(remaining.reports[0]!.settlement).toBe(shared ? 'twin' : 'succeeded');
          expect(executions.get(taskId)).toBe(shared ? 1 : 2);
        } finally {
          await producer.close();
          await other.close();
        }
      });
    }
  });
}
