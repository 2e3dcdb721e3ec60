/**
 * SIGTERM under load: the worker runs its open aggregates, settles them and
 * exits 0; a second worker finishes the rest; nothing that had succeeded runs
 * again.
 */
import { expect, test } from 'vitest';
import { connectClient, dispatchAll, executionsPerTask, faultRun, pick, recordFigures, startWorker } from './support.js';

test('SIGTERM under load: drained, and no succeeded task executed again', async () => {
  const total = pick(20_000, 3_000);
  const faults = await faultRun('concurrency: 4\n      batch: { maxMessages: 100, maxSeconds: 0.5 }');
  const env = { ...faults, env: { ...faults.env, FAULT_SLOW_MS: '20' } };
  const first = await startWorker(env);
  const { client, close } = await connectClient(faults);
  let second: Awaited<ReturnType<typeof startWorker>> | undefined;
  let handover: Promise<number> | undefined;
  try {
    const { ids, wrong } = await dispatchAll(
      client,
      total,
      (i) => `key-${i % 16}`,
      (done) => {
        if (done !== Math.floor(total / 3)) return;
        handover = (async () => {
          first.child.kill('SIGTERM');
          const code = await first.exited;
          second = await startWorker(env);
          return code;
        })();
      },
    );
    expect(await handover!).toBe(0);
    const executions = await executionsPerTask(faults);
    const executedTwice = [...executions.values()].filter((n) => n > 1).length;
    await recordFigures('gracefulShutdown', {
      tasks: total,
      sigterms: 1,
      lost: ids.filter((id) => !executions.has(id)).length,
      executedTwice,
      wrongResults: wrong,
    });
    expect(wrong).toBe(0);
    expect(executions.size).toBe(total);
    expect(executedTwice).toBe(0);
  } finally {
    await close();
    second?.child.kill('SIGTERM');
    await second?.exited;
  }
});
