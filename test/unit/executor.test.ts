import 'reflect-metadata';
import { describe, expect, test } from 'vitest';
import { Batch, type BatchMethod } from '../../src/service/decorators.js';
import { resolveService } from '../../src/service/registry.js';
import { Executor } from '../../src/worker/executor.js';
import { Task, type BatchContext, type TaskContext } from '../../src/worker/context.js';
import { BatchContractError, MissingResultError, TaskTimeoutError } from '../../src/errors.js';
import { systemClock } from '../../src/util/clock.js';
import { flushed, receivedTask } from '../support/tasks.js';

type Behaviour = (tasks: Map<string, number>) => unknown;

function harness(behaviour: Behaviour, timeoutMs = 5000) {
  class Service {
    double(n: number): number {
      return n * 2;
    }
    @Batch('double')
    // Returns whatever the behaviour does: the executor's runtime checks are under test, not the types.
    doubleMany(tasks: Map<string, number>): ReturnType<BatchMethod> {
      return behaviour(tasks) as ReturnType<BatchMethod>;
    }
    echoContext(): TaskContext {
      return Task.context();
    }
  }
  const instance = new Service();
  const def = resolveService('S', instance);
  const executor = new Executor('S', instance, timeoutMs, systemClock);
  const method = def.methods.get('double')!;
  const tasks = (...ids: string[]) => ids.map((id, i) => receivedTask(id, method, i + 1));
  const tasksWithKey = (batchKey: string, ...ids: string[]) => ids.map((id, i) => receivedTask(id, method, i + 1, batchKey));
  return { executor, def, tasks, tasksWithKey };
}

describe('Executor.runBatch', () => {
  test('an entry per task: values succeed, Error entries fail that task alone', async () => {
    const { executor, tasks } = harness((m) => new Map([...m].map(([id, n]) => [id, id === 'b' ? new Error('bad b') : n * 2])));
    const run = await executor.runBatch(flushed(tasks('a', 'b', 'c'), 'double'), 'doubleMany');
    expect(run.outcomes.get('a')).toEqual({ ok: true, value: 2 });
    expect(run.outcomes.get('b')).toMatchObject({ ok: false, error: { message: 'bad b' } });
    expect(run.outcomes.get('c')).toEqual({ ok: true, value: 6 });
    expect(run.contractErrors).toEqual([]);
  });

  test('a missing entry fails that task with an error that names it', async () => {
    const { executor, tasks } = harness((m) => new Map([...m].filter(([id]) => id !== 'b')));
    const run = await executor.runBatch(flushed(tasks('a', 'b'), 'double'), 'doubleMany');
    const b = run.outcomes.get('b')!;
    expect(b.ok).toBe(false);
    expect((b as { error: unknown }).error).toBeInstanceOf(MissingResultError);
    expect(String((b as { error: Error }).error.message)).toContain('task b');
    expect(run.outcomes.get('a')!.ok).toBe(true);
  });

  test('an unknown extra key is a contract error reported for the batch; the tasks still settle', async () => {
    const { executor, tasks } = harness((m) => new Map([...[...m].map(([id]) => [id, 1] as const), ['intruder', 1]]));
    const run = await executor.runBatch(flushed(tasks('a'), 'double'), 'doubleMany');
    expect(run.outcomes.get('a')).toEqual({ ok: true, value: 1 });
    expect(run.contractErrors).toHaveLength(1);
    expect(run.contractErrors[0]).toContain('"intruder"');
  });

  test('returning nothing gives every task the result null', async () => {
    const { executor, tasks } = harness(() => undefined);
    const run = await executor.runBatch(flushed(tasks('a', 'b'), 'double'), 'doubleMany');
    expect([...run.outcomes.values()]).toEqual([
      { ok: true, value: null },
      { ok: true, value: null },
    ]);
  });

  test('a thrown error fails every task of the batch', async () => {
    const boom = new Error('boom');
    const { executor, tasks } = harness(() => {
      throw boom;
    });
    const run = await executor.runBatch(flushed(tasks('a', 'b'), 'double'), 'doubleMany');
    expect([...run.outcomes.values()]).toEqual([
      { ok: false, error: boom },
      { ok: false, error: boom },
    ]);
  });

  test('returning something that is not a Map fails every task with a contract error', async () => {
    const { executor, tasks } = harness(() => [1, 2]);
    const run = await executor.runBatch(flushed(tasks('a', 'b'), 'double'), 'doubleMany');
    for (const outcome of run.outcomes.values()) {
      expect((outcome as { error: unknown }).error).toBeInstanceOf(BatchContractError);
    }
    expect(run.contractErrors[0]).toMatch(/must return a Map/);
  });

  test('a task id twice in one batch runs once', async () => {
    const seen: number[] = [];
    const { executor, tasks } = harness((m) => {
      seen.push(m.size);
      return undefined;
    });
    const [a] = tasks('a');
    const run = await executor.runBatch(flushed([a!, a!], 'double'), 'doubleMany');
    expect(seen).toEqual([1]);
    expect(run.outcomes.size).toBe(1);
  });

  test('a batch past timeoutSeconds fails every task with TaskTimeoutError and aborts its signal', async () => {
    let signal: AbortSignal | undefined;
    const { executor, tasks } = harness(() => {
      signal = Task.batch().signal;
      return new Promise(() => undefined); // never settles
    }, 30);
    const run = await executor.runBatch(flushed(tasks('a', 'b'), 'double'), 'doubleMany');
    for (const outcome of run.outcomes.values()) expect((outcome as { error: unknown }).error).toBeInstanceOf(TaskTimeoutError);
    expect(signal!.aborted).toBe(true);
  });

  test('the batch scope exposes Task.batch() and Task.contextOf(taskId)', async () => {
    let batch: BatchContext | undefined;
    let contexts: TaskContext[] = [];
    const { executor, tasksWithKey } = harness((m) => {
      batch = Task.batch();
      contexts = [...m.keys()].map((id) => Task.contextOf(id));
      expect(() => Task.context()).toThrow(/inside a batch method; use Task.contextOf/);
      expect(() => Task.contextOf('nope')).toThrow(/no such task in batch/);
      return undefined;
    });
    await executor.runBatch(flushed(tasksWithKey('tenant-7', 'a', 'b'), 'double', 'tenant-7'), 'doubleMany');
    expect(batch).toMatchObject({
      batchKey: 'tenant-7',
      size: 2,
      bytes: 20,
      flushReason: 'maxMessages',
      serviceName: 'S',
      methodName: 'double',
    });
    expect(contexts.map((c) => [c.taskId, c.batchKey, c.retryIndex])).toEqual([
      ['a', 'tenant-7', 0],
      ['b', 'tenant-7', 0],
    ]);
  });
});

describe('Executor.runSingle and the task context', () => {
  test('a single task sees its own context, and Task.batch() says it is not in a batch', async () => {
    const { executor, def } = harness(() => undefined);
    const method = def.methods.get('echoContext')!;
    const outcome = await executor.runSingle(receivedTask('t9', method, undefined, 'tenant-1'));
    expect(outcome.ok).toBe(true);
    expect((outcome as { value: TaskContext }).value).toMatchObject({
      taskId: 't9',
      batchKey: 'tenant-1',
      serviceName: 'S',
      methodName: 'echoContext',
    });
  });

  test('the context functions throw outside a task, saying so', () => {
    expect(() => Task.context()).toThrow(/outside a task/);
    expect(() => Task.contextOf('x')).toThrow(/outside a batch/);
    expect(() => Task.batch()).toThrow(/outside a batch/);
  });
});
