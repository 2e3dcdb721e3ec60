/**
 * The broker crashes (SIGKILL) while batches run, and comes back 5 s later
 * (issue 14). Nothing may be lost and every result must be right. The
 * restarted broker redelivers tasks whose outcome was already durable (it
 * had not persisted their acks): each worker drops copies of attempts it or
 * the other worker settled (`settledCache.shared`), and does not start what
 * it was given on the lost connection. What still runs twice is recorded
 * with whether its first run started before the broker died (a batch
 * running at the kill), not bounded here (docs/reliability.md). Two
 * `sheaf worker` processes, 1 s batches.
 * Full runs only (`npm run test:faults`; vitest.faults.config.ts says why).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, expect, test } from 'vitest';
import type { CliProcess } from '../support/cli.js';
import {
  brokerCommand,
  brokerRestartable,
  connectClient,
  dispatchAll,
  executionLog,
  type Execution,
  faultRun,
  pick,
  recordFigures,
  startWorker,
} from './support.js';

const workers: CliProcess[] = [];
afterAll(async () => {
  for (const w of workers) w.child.kill('SIGKILL');
  // A clean stop and start after the crash, so that the runs after this one find a healthy broker.
  await brokerCommand('stop');
  await brokerCommand('start');
}, 180_000);

test.skipIf(!brokerRestartable)('a broker killed -9 mid-batch: nothing lost, every result right', async () => {
  const total = pick(4_000, 2_000);
  const faults = await faultRun();
  // Batches take a second, so the kill lands in running batches.
  const env = { ...faults.env, FAULT_SLOW_MS: '1000' };
  for (let i = 0; i < 2; i++) workers.push(await startWorker({ ...faults, env }));
  const { client, close } = await connectClient(faults);
  let crash: Promise<number> | undefined;
  let killedAt = 0;
  const started = Date.now();
  try {
    const { ids, wrong } = await dispatchAll(
      client,
      total,
      (i) => `key-${i % 8}`,
      (done) => {
        if (done !== Math.floor(total / 3)) return;
        crash = (async () => {
          const t = Date.now();
          await brokerCommand('kill');
          killedAt = Date.now();
          // Down for 5 s: what the workers and the client do meanwhile is part of the run.
          await sleep(5000);
          await brokerCommand('start');
          return (Date.now() - t) / 1000;
        })();
      },
    );
    const downSeconds = await crash!;
    const runs = new Map<string, Execution[]>();
    for (const run of await executionLog(faults)) runs.set(run.taskId, [...(runs.get(run.taskId) ?? []), run]);
    const executed = ids.filter((id) => runs.has(id)).length;
    const twice = [...runs.values()].filter((r) => r.length > 1);
    await recordFigures('brokerKill', {
      tasks: total,
      brokerDownSeconds: downSeconds.toFixed(1),
      lost: total - executed,
      wrongResults: wrong,
      executedTwice: twice.length,
      executedTwiceRate: (twice.length / total).toFixed(4),
      twiceFirstStartedBeforeKill: twice.filter((r) => Math.min(...r.map((e) => e.startedAt)) <= killedAt).length,
      twiceOnOneWorker: twice.filter((r) => new Set(r.map((e) => e.pid)).size === 1).length,
      seconds: ((Date.now() - started) / 1000).toFixed(1),
    });
    expect(wrong).toBe(0);
    expect(executed).toBe(total);
    for (const w of workers) expect(w.child.exitCode).toBeNull();
  } finally {
    await close();
  }
});
