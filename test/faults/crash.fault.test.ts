/**
 * Worker crashes: workers are `sheaf worker` processes, killed with SIGKILL
 * again and again while batches are open and running, and replaced. Every
 * task must complete, with its own result, exactly once at the client.
 */
import { afterAll, expect, test } from 'vitest';
import type { CliProcess } from '../support/cli.js';
import { connectClient, dispatchAll, executionsPerTask, faultRun, pick, recordFigures, startWorker } from './support.js';

const workers: CliProcess[] = [];
afterAll(async () => {
  for (const w of workers) w.child.kill('SIGKILL');
});

test('SIGKILL workers repeatedly under load: no task lost, duplicates only from redelivery', async () => {
  const total = pick(100_000, 5_000);
  const kills = pick(10, 3);
  const run = await faultRun();
  // Each batch takes 20 ms, so kills land in running batches as well as open aggregates.
  const runWithWork = { ...run, env: { ...run.env, FAULT_SLOW_MS: '20' } };
  const live: CliProcess[] = [];
  for (let i = 0; i < 3; i++) {
    const w = await startWorker(runWithWork);
    workers.push(w);
    live.push(w);
  }
  const { client, close } = await connectClient(run);
  let killed = 0;
  let chaos = Promise.resolve();
  const started = Date.now();
  const killAt = new Set([...Array(kills)].map((_, k) => Math.floor(((k + 1) * total) / (kills + 1))));
  try {
    const { ids, wrong } = await dispatchAll(
      client,
      total,
      (i) => `key-${i % 8}`,
      (done) => {
        if (!killAt.has(done)) return;
        // Kill the oldest live worker mid-flight, then bring up a replacement.
        chaos = chaos.then(async () => {
          const victim = live.shift()!;
          victim.child.kill('SIGKILL');
          await victim.exited;
          killed += 1;
          const replacement = await startWorker(runWithWork);
          workers.push(replacement);
          live.push(replacement);
        });
      },
    );
    await chaos;
    const seconds = (Date.now() - started) / 1000;
    const executions = await executionsPerTask(run);
    const executed = ids.filter((id) => (executions.get(id) ?? 0) > 0).length;
    const totalExecutions = [...executions.values()].reduce((a, b) => a + b, 0);
    const duplicates = totalExecutions - total;
    await recordFigures('crash', {
      tasks: total,
      kills: killed,
      lost: total - executed,
      wrongResults: wrong,
      duplicates,
      duplicateRate: (duplicates / total).toFixed(4),
      seconds: seconds.toFixed(1),
    });
    expect(killed).toBe(kills);
    expect(wrong).toBe(0);
    expect(executed).toBe(total);
    expect(client.pendingTasks).toBe(0);
  } finally {
    await close();
    for (const w of live) {
      w.child.kill('SIGTERM');
      await w.exited;
    }
  }
});
