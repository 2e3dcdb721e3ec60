import 'reflect-metadata';
import { transportTargets } from '../support/transports.js';
import { afterEach, describe, expect, test } from 'vitest';
import { Batch, type BatchMethod } from '../../src/service/decorators.js';
import { Task } from '../../src/worker/context.js';
import { NonRetryableError, TaskFailedError } from '../../src/errors.js';
import { Counter, readDeadLetters, startSystem, type System } from '../support/system.js';

interface Jobs {
  run(input: string): Promise<string>;
}

/** Fast, deterministic retries for tests. */
const retry = { minimumSeconds: 0.01, maximumSeconds: 0.05, randomFactor: 0, maximumRetries: 3 };

for (const target of transportTargets()) {
  describe.skipIf(target.skip)(`retries, per task (${target.name})`, () => {
    let system: System | undefined;
    afterEach(async () => {
      await system?.stop();
      system = undefined;
    });

    async function start(batchMethod: (tasks: Map<string, string>) => unknown, extra: Record<string, unknown> = {}) {
      class JobsImpl {
        run(_input: string): void {}
        @Batch('run')
        // Returns whatever the test's batch method does: the runtime checks are under test, not the types.
        runMany(tasks: Map<string, string>): ReturnType<BatchMethod> {
          return batchMethod(tasks) as ReturnType<BatchMethod>;
        }
      }
      system = await startSystem(
        [{ name: 'Jobs', executor: { factory: () => new JobsImpl(), batch: { maxMessages: 10, maxSeconds: 0.02 }, retry, ...extra } }],
        await target.create(),
      );
      return { ...system, jobs: system.client.service<Jobs>('Jobs', { meta: { batchKey: 'k' } }) };
    }

    test('isolation none: a batch that throws once ends with every task succeeded, each retried once on its own', async () => {
      const executions = new Counter();
      const retryIndexes: number[] = [];
      let thrown = false;
      const { jobs, settlements } = await start(
        (tasks) => {
          for (const id of tasks.keys()) {
            executions.add(id);
            const ctx = Task.contextOf(id);
            if (ctx.retryIndex > 0) {
              retryIndexes.push(ctx.retryIndex);
              expect(ctx.lastError?.message).toBe('the whole batch failed');
            }
          }
          if (!thrown) {
            thrown = true;
            throw new Error('the whole batch failed');
          }
          return new Map([...tasks].map(([id, input]) => [id, `done ${input}`]));
        },
        { isolation: 'none' },
      );
      const results = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((x) => jobs.run(x)));
      expect(results).toEqual(['done a', 'done b', 'done c', 'done d', 'done e']);
      expect(executions.values()).toEqual([2, 2, 2, 2, 2]);
      expect(retryIndexes).toEqual([1, 1, 1, 1, 1]);
      // Five separate retries were published, one per task.
      expect(settlements.filter((s) => s.settlement === 'retried')).toHaveLength(5);
    });

    test('a partial failure retries only the failed tasks and never re-runs the others', async () => {
      const executions = new Counter();
      const { jobs } = await start((tasks) => {
        const out = new Map<string, unknown>();
        for (const [id, input] of tasks) {
          const n = executions.add(input);
          out.set(id, input.startsWith('odd') && n === 1 ? new Error(`${input} failed once`) : `ok ${input}`);
        }
        return out;
      });
      const inputs = [...Array(10)].map((_, i) => (i % 2 ? `odd${i}` : `even${i}`));
      expect(await Promise.all(inputs.map((x) => jobs.run(x)))).toEqual(inputs.map((x) => `ok ${x}`));
      for (const input of inputs) expect(executions.get(input)).toBe(input.startsWith('odd') ? 2 : 1);
    });

    test('a task that keeps failing ends as TaskFailedError after maximumRetries + 1 attempts, on the dead-letter topic', async () => {
      const executions = new Counter();
      const { jobs, transport } = await start((tasks) => {
        return new Map(
          [...tasks].map(([id, input]) => {
            executions.add(input);
            return [id, input === 'poison' ? new Error('always broken') : 'fine'];
          }),
        );
      });
      const poison = jobs.run('poison');
      const others = Promise.all(['a', 'b', 'c'].map((x) => jobs.run(x)));
      const error = await poison.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TaskFailedError);
      const failed = error as TaskFailedError;
      expect(failed.attempts).toBe(retry.maximumRetries + 1);
      expect(failed.reason).toBe('retriesExhausted');
      expect(failed.lastError.message).toBe('always broken');
      expect(failed.methodName).toBe('run');
      expect(executions.get('poison')).toBe(4);
      expect(await others).toEqual(['fine', 'fine', 'fine']);
      const [dead] = await readDeadLetters(transport, 'Jobs', 1);
      expect(dead).toMatchObject({
        reason: 'retriesExhausted',
        attempts: 4,
        task: { taskId: failed.taskId, args: ['poison'] },
        error: { message: 'always broken' },
      });
    });

    test('NonRetryableError and ignoredErrors fail a task at once', async () => {
      class QuotaExceeded extends Error {
        override name = 'QuotaExceeded';
      }
      const executions = new Counter();
      const { jobs, transport } = await start(
        (tasks) =>
          new Map(
            [...tasks].map(([id, input]) => {
              executions.add(input);
              return [id, input === 'nope' ? new NonRetryableError('not allowed') : input === 'quota' ? new QuotaExceeded('over') : 'ok'];
            }),
          ),
        { retry: { ...retry, ignoredErrors: ['QuotaExceeded'] } },
      );
      const [nope, quota, ok] = await Promise.allSettled([jobs.run('nope'), jobs.run('quota'), jobs.run('fine')]);
      expect(ok).toEqual({ status: 'fulfilled', value: 'ok' });
      for (const [settled, name] of [
        [nope, 'NonRetryableError'],
        [quota, 'QuotaExceeded'],
      ] as const) {
        expect(settled.status).toBe('rejected');
        const error = (settled as PromiseRejectedResult).reason as TaskFailedError;
        expect(error.attempts).toBe(1);
        expect(error.reason).toBe('nonRetryable');
        expect(error.lastError.name).toBe(name);
      }
      expect(executions.get('nope')).toBe(1);
      expect(executions.get('quota')).toBe(1);
      const dead = await readDeadLetters(transport, 'Jobs', 2);
      expect(dead.map((d) => d.reason)).toEqual(['nonRetryable', 'nonRetryable']);
    });

    test('a batch method that returns an array dead-letters its tasks with BatchContractError, never retried', async () => {
      const executions = new Counter();
      const { jobs, transport } = await start((tasks) => {
        for (const input of tasks.values()) executions.add(input);
        return [...tasks.values()];
      });
      const failed = (await jobs.run('shape').catch((e: unknown) => e)) as TaskFailedError;
      expect(failed).toBeInstanceOf(TaskFailedError);
      expect(failed.reason).toBe('nonRetryable');
      expect(failed.lastError.name).toBe('BatchContractError');
      expect(failed.lastError.message).toMatch(/must return a Map<taskId, result \| Error> or nothing, returned an array/);
      expect(executions.get('shape')).toBe(1);
      const [dead] = await readDeadLetters(transport, 'Jobs', 1);
      expect(dead!.error?.name).toBe('BatchContractError');
    });

    test('a batch past timeoutSeconds is retried, and the retry succeeds', async () => {
      let first = true;
      const { jobs } = await start(
        async (tasks) => {
          if (first) {
            first = false;
            // Wait for the timeout's abort: the execution's signal is the event to await.
            const signal = Task.batch().signal;
            await new Promise((resolve) => signal.addEventListener('abort', resolve));
          }
          return new Map([...tasks].map(([id]) => [id, Task.contextOf(id).lastError?.name ?? 'first']));
        },
        { timeoutSeconds: 0.05 },
      );
      expect(await jobs.run('slow')).toBe('TaskTimeoutError');
    });

    test('a missing entry fails only that task, which is retried', async () => {
      const executions = new Counter();
      const { jobs } = await start((tasks) => {
        const out = new Map<string, string>();
        for (const [id, input] of tasks) if (executions.add(input) > 1 || input !== 'skipped') out.set(id, `ok ${input}`);
        return out;
      });
      expect(await Promise.all([jobs.run('skipped'), jobs.run('kept')])).toEqual(['ok skipped', 'ok kept']);
      expect([executions.get('skipped'), executions.get('kept')]).toEqual([2, 1]);
    });
  });
}
