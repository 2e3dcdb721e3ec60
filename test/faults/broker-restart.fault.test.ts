/**
 * The broker stops and starts again while tasks flow. Workers and the client
 * reconnect on their own; no task is lost. Needs a broker this run may
 * restart: one started by scripts/pulsar.sh (CI's, or the test setup's).
 */
import { afterAll, expect, test } from 'vitest';
import type { CliProcess } from '../support/cli.js';
import {
  brokerCommand,
  brokerRestartable,
  connectClient,
  dispatchAll,
  executionsPerTask,
  faultRun,
  pick,
  recordFigures,
  startWorker,
} from './support.js';

const workers: CliProcess[] = [];
afterAll(async () => {
  for (const w of workers) w.child.kill('SIGKILL');
});

test.skipIf(!brokerRestartable)('a broker restart mid-run: clients and workers reconnect, nothing is lost', async () => {
  const total = pick(20_000, 3_000);
  const faults = await faultRun();
  for (let i = 0; i < 2; i++) workers.push(await startWorker(faults));
  const { client, close } = await connectClient(faults);
  let restart: Promise<number> | undefined;
  const started = Date.now();
  try {
    const { ids, wrong } = await dispatchAll(
      client,
      total,
      (i) => `key-${i % 4}`,
      (done) => {
        if (done !== Math.floor(total / 3)) return;
        restart = (async () => {
          const t = Date.now();
          await brokerCommand('stop');
          await brokerCommand('start');
          return (Date.now() - t) / 1000;
        })();
      },
    );
    const downSeconds = await restart!;
    const executions = await executionsPerTask(faults);
    const executed = ids.filter((id) => (executions.get(id) ?? 0) > 0).length;
    const duplicates = [...executions.values()].reduce((a, b) => a + b, 0) - total;
    await recordFigures('brokerRestart', {
      tasks: total,
      restarts: 1,
      brokerDownSeconds: downSeconds.toFixed(1),
      lost: total - executed,
      wrongResults: wrong,
      duplicates,
      seconds: ((Date.now() - started) / 1000).toFixed(1),
    });
    expect(wrong).toBe(0);
    expect(executed).toBe(total);
    // The workers lived through it.
    for (const w of workers) expect(w.child.exitCode).toBeNull();
  } finally {
    await close();
  }
});
