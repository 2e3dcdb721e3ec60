/**
 * Isolation (issue 14): a batch that fails as a whole is split, so a poison
 * task fails alone and the innocent tasks of its batch succeed, without using
 * their retry budget. On every transport.
 */
import 'reflect-metadata';
import { afterEach, describe, expect, test } from 'vitest';
import { TaskFailedError } from '../../src/errors.js';
import { Batch, type BatchMethod } from '../../src/service/decorators.js';
import { Task, type BatchContext } from '../../src/worker/context.js';
import type { IsolationMode } from '../../src/config/executor-schema.js';
import { Counter, readDeadLetters, startSystem, type System } from '../support/system.js';
import { transportTargets } from '../support/transports.js';

interface Jobs {
  run(input: string): Promise<string>;
}

const TASKS = 16;
/** Every task fits one batch: the whole batch meets the poison. */
const batch = { maxMessages: TASKS, maxSeconds: 2 };
const retry = { minimumSeconds: 0.01, maximumSeconds: 0.05, randomFactor: 0, maximumRetries: 2 };

for (const target of transportTargets()) {
  describe.skipIf(target.skip)(`isolation of failed batches (${target.name})`, () => {
    let system: System | undefined;
    afterEach(async () => {
      await system?.stop();
      system = undefined;
    });

    async function start(
      batchMethod: (tasks: Map<string, string>) => unknown,
      extra: { isolation?: IsolationMode; timeoutSeconds?: number } = {},
    ) {
      class JobsImpl {
        run(_input: string): void {}
        @Batch('run')
        runMany(tasks: Map<string, string>): ReturnType<BatchMethod> {
          return batchMethod(tasks) as ReturnType<BatchMethod>;
        }
      }
      system = await startSystem(
        [{ name: 'Jobs', executor: { factory: () => new JobsImpl(), batch, retry, ...extra } }],
        await target.create(),
      );
      return { ...system, jobs: system.client.service<Jobs>('Jobs', { meta: { batchKey: 'k' } }) };
    }

    /** Dispatches the inputs and waits for every outcome: the value, or the TaskFailedError. */
    async function runAll(jobs: Jobs, inputs: string[]): Promise<Array<string | TaskFailedError>> {
      return Promise.all(inputs.map((x) => jobs.run(x).catch((error: unknown) => error as TaskFailedError)));
    }

    const inputs = [...Array(TASKS).keys()].map((i) => (i === 5 ? 'poison' : `task-${i}`));
    const echoUnlessPoison = (executions: Counter, isolation: Array<BatchContext['isolation']>) => (tasks: Map<string, string>) => {
      isolation.push(Task.batch().isolation);
      for (const input of tasks.values()) executions.add(input);
      if ([...tasks.values()].includes('poison')) throw new Error('the batch held the poison');
      return new Map([...tasks].map(([id, input]) => [id, `done ${input}`]));
    };

    test('bisect (default): the poison fails alone; the innocents succeed on their first attempt, each run at most log2(16) + 1 times', async () => {
      const executions = new Counter();
      const isolation: Array<BatchContext['isolation']> = [];
      const { jobs, settlements, transport } = await start(echoUnlessPoison(executions, isolation));
      const outcomes = await runAll(jobs, inputs);
      outcomes.forEach((outcome, i) => {
        if (i === 5) {
          expect(outcome).toBeInstanceOf(TaskFailedError);
          // Its own retry budget: 1 execution + 2 retries, counted only once it failed alone.
          expect((outcome as TaskFailedError).attempts).toBe(3);
        } else expect(outcome).toBe(`done ${inputs[i]}`);
      });
      for (const input of inputs) {
        if (input !== 'poison') expect(executions.get(input)).toBeLessThanOrEqual(Math.ceil(Math.log2(TASKS)) + 1);
      }
      // Split four times: 16 → 8 → 4 → 2 → 1, then the poison's own retries, alone.
      // Two batches per step (the poison's half and the other), then the poison's two retries alone (step 0).
      const steps = isolation.map((i) => (i === null ? 'none' : `${i.step}/${i.groupSize}`)).sort();
      expect(steps).toEqual(['0/1', '0/1', '1/8', '1/8', '2/4', '2/4', '3/2', '3/2', '4/1', '4/1', 'none']);
      expect(executions.get('poison')).toBe(4 + 1 + 2);
      const innocentReports = settlements.filter((s) => s.settlement === 'succeeded');
      expect(innocentReports).toHaveLength(TASKS - 1);
      expect(innocentReports.every((s) => s.attempts === 1)).toBe(true);
      expect(settlements.filter((s) => s.poison)).toHaveLength(1);
      expect(settlements.filter((s) => s.settlement === 'retried')).toHaveLength(2);
      const [letter] = await readDeadLetters(transport, 'Jobs', 1);
      expect(letter!.task?.args).toEqual(['poison']);
      expect(letter!.attempts).toBe(3);
    });

    test('a batch that times out (the poison hangs) is bisected the same way', async () => {
      const executions = new Counter();
      const { jobs } = await start(
        (tasks) => {
          for (const input of tasks.values()) executions.add(input);
          // Ignores its abort signal: only the timeout ends the batch.
          if ([...tasks.values()].includes('poison')) return new Promise(() => undefined);
          return new Map([...tasks].map(([id, input]) => [id, `done ${input}`]));
        },
        { timeoutSeconds: 0.2 },
      );
      const outcomes = await runAll(jobs, inputs);
      expect(outcomes.filter((o) => o instanceof TaskFailedError)).toHaveLength(1);
      expect((outcomes[5] as TaskFailedError).lastError.name).toBe('TaskTimeoutError');
      for (const input of inputs) {
        if (input !== 'poison') expect(executions.get(input)).toBeLessThanOrEqual(Math.ceil(Math.log2(TASKS)) + 1);
      }
    });

    test('single: every task of the failed batch is retried alone at once', async () => {
      const executions = new Counter();
      const isolation: Array<BatchContext['isolation']> = [];
      const { jobs, settlements } = await start(echoUnlessPoison(executions, isolation), { isolation: 'single' });
      const outcomes = await runAll(jobs, inputs);
      expect(outcomes.filter((o) => o instanceof TaskFailedError)).toHaveLength(1);
      for (const input of inputs) if (input !== 'poison') expect(executions.get(input)).toBe(2);
      expect(settlements.filter((s) => s.settlement === 'isolated')).toHaveLength(TASKS);
      expect(isolation.filter((i) => i?.step === 1 && i.groupSize === 1)).toHaveLength(TASKS);
    });

    test('none: the innocents go back with the poison and use up their retries with it', async () => {
      const executions = new Counter();
      const { jobs, settlements } = await start(echoUnlessPoison(executions, []), { isolation: 'none' });
      const outcomes = await runAll(jobs, inputs);
      // The retries of all 16 meet again: every task is dead-lettered.
      expect(outcomes.filter((o) => o instanceof TaskFailedError).length).toBeGreaterThan(1);
      expect(settlements.filter((s) => s.settlement === 'isolated')).toHaveLength(0);
    });

    test('per-task errors are not a failed batch: only the failed task is retried, nothing is isolated', async () => {
      const executions = new Counter();
      const { jobs, settlements } = await start((tasks) => {
        const out = new Map<string, unknown>();
        for (const [id, input] of tasks) {
          const n = executions.add(input);
          out.set(id, input === 'poison' && n === 1 ? new Error('failed once') : `done ${input}`);
        }
        return out;
      });
      const outcomes = await runAll(jobs, inputs);
      expect(outcomes).toEqual(inputs.map((x) => `done ${x}`));
      expect(executions.get('poison')).toBe(2);
      expect(settlements.filter((s) => s.settlement === 'isolated')).toHaveLength(0);
      expect(settlements.filter((s) => s.settlement === 'retried')).toHaveLength(1);
    });
  });
}
