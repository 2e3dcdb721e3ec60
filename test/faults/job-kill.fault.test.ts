/**
 * A job under kills (issue 17's figure): one task per line of a large input,
 * dispatched by `sheaf job run` (killed with SIGKILL once while it
 * dispatches, then resumed), run by two `sheaf worker` processes that are
 * each killed with SIGKILL twice (the job tracker's owner among them) and
 * replaced. The job must end with every line counted once, its finished
 * mark written once, its onComplete callback run under one task id, no line
 * dispatched twice, and each worker's peak RSS under 300 MiB.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, expect, test } from 'vitest';
import { startCli, type CliProcess } from '../support/cli.js';
import {
  connectClient,
  executionLog,
  jobFaultRun,
  pick,
  recordFigures,
  startWorker,
  trackerOwnerPid,
  watchFinishedMarks,
} from './support.js';

const processes: CliProcess[] = [];
const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  // Every process gone before the namespace is deleted: a live worker would make its topics again.
  for (const p of processes) p.child.kill('SIGKILL');
  await Promise.all(processes.map((p) => p.exited));
  for (const cleanup of cleanups) await cleanup();
});

/** The peak resident set size of a live process, in MiB (VmHWM). */
async function peakRssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

test('a job of many lines: dispatcher killed and resumed, both workers killed twice: counted exactly, finished once', async () => {
  const lines = pick(1_000_000, 50_000);
  const { run, callbackLog, env, runArgs } = await jobFaultRun(lines);
  // Workers run as docs/operations.md ("Memory") recommends: V8 otherwise lets a busy worker's heap grow to several
  // times what is live before it collects (a worker here peaked at 323-340 MiB with 50 MiB live).
  const workerEnv = { ...env, NODE_OPTIONS: '--max-old-space-size=128' };

  // Every snapshot the trackers write, from before the first: snapshots carry the finished mark.
  const { client, transport, close } = await connectClient(run);
  cleanups.push(close);
  const finished = await watchFinishedMarks(transport);
  const workers: CliProcess[] = [];
  const peaks = new Map<number, number>();
  const launch = async (): Promise<CliProcess> => {
    const worker = await startWorker({ ...run, env: workerEnv });
    processes.push(worker);
    workers.push(worker);
    return worker;
  };
  await launch();
  await launch();

  const started = Date.now();
  let dispatcher = startCli(runArgs, env);
  processes.push(dispatcher);
  await dispatcher.waitFor(/"jobId"/);
  const jobId = JSON.parse(dispatcher.stdout().split('\n')[0]!).jobId as string;
  const job = await client.attachJob(jobId);
  /** Resolves once the job has `count` tasks settled: its status, asked twice a second (the tracker publishes once a second). */
  const settled = async (count: number): Promise<void> => {
    for (;;) {
      if (dispatcher.child.exitCode !== null && dispatcher.child.exitCode !== 0) {
        throw new Error(`sheaf job run exited with ${dispatcher.child.exitCode}:\n${dispatcher.stderr().slice(-2000)}`);
      }
      const s = await job.status().catch(() => null);
      if (s && s.succeeded + s.failed + s.deadLettered >= count) return;
      await new Promise((r) => setTimeout(r, 500));
    }
  };

  // The dispatcher dies once, at a random moment of its dispatching (a random time: it is what is being tested), and is resumed.
  await new Promise((r) => setTimeout(r, pick(3000 + Math.random() * 12_000, 500 + Math.random() * 1500)));
  dispatcher.child.kill('SIGKILL');
  await dispatcher.exited;
  dispatcher = startCli([...runArgs, '--resume', jobId], env);
  processes.push(dispatcher);
  await dispatcher.waitFor(/resuming job \S+ after (\d+) dispatched items/);
  const resumedAt = Number(/resuming job \S+ after (\d+)/.exec(dispatcher.stderr())![1]);

  // Each worker is killed twice, in turn; the owner of the job tracker is noted at each kill.
  let ownerKills = 0;
  for (let kill = 0; kill < 4; kill++) {
    await settled(Math.floor(lines * (0.35 + 0.12 * kill)));
    const victim = workers.splice(kill % 2 === 0 ? 0 : workers.length - 1, 1)[0]!;
    const pid = victim.child.pid!;
    if ((await trackerOwnerPid(run)) === pid) ownerKills += 1;
    peaks.set(pid, await peakRssMiB(pid));
    victim.child.kill('SIGKILL');
    await victim.exited;
    await launch();
  }

  expect(await dispatcher.exited).toBe(0);
  const final = JSON.parse(dispatcher.stdout().trim().split('\n').pop()!) as Record<string, unknown>;
  const seconds = (Date.now() - started) / 1000;
  for (const worker of workers) peaks.set(worker.child.pid!, await peakRssMiB(worker.child.pid!));
  const deduplicated = Number(/(\d+) items the broker had stored before the resume/.exec(dispatcher.stderr())?.[1] ?? 0);

  // The callback, and the observer caught up with the topic.
  const callbacks = async () =>
    (await readFile(callbackLog, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' ')[0]!);
  while ((await callbacks()).length === 0) await new Promise((r) => setTimeout(r, 200));
  await finished.caughtUp(run);
  const executions = await executionLog(run);
  const idsPerLine = new Map<string, Set<string>>();
  for (const e of executions) {
    const set = idsPerLine.get(e.input) ?? new Set();
    set.add(e.taskId);
    idsPerLine.set(e.input, set);
  }
  const linesDispatchedTwice = [...idsPerLine.values()].filter((ids) => ids.size > 1).length;
  const callbackIds = new Set(await callbacks());
  await recordFigures('job-kills', {
    lines,
    seconds: seconds.toFixed(1),
    succeeded: Number(final.succeeded),
    total: Number(final.total),
    executions: executions.length,
    executedTwice: executions.length - idsPerLine.size,
    linesDispatchedTwice,
    dispatcherResumedAt: resumedAt,
    deduplicatedByBroker: deduplicated,
    workerKills: 4,
    trackerOwnerKills: ownerKills,
    finishedMarks: finished.marks.size,
    onCompleteRuns: (await callbacks()).length,
    peakWorkerRssMiB: Math.max(...peaks.values()).toFixed(0),
  });
  expect(final).toMatchObject({ jobId, total: lines, succeeded: lines, failed: 0, deadLettered: 0, pending: 0 });
  expect(idsPerLine.size).toBe(lines);
  expect(linesDispatchedTwice).toBe(0);
  expect(finished.marks.size).toBe(1);
  expect(callbackIds).toEqual(new Set([`${jobId}:finished`]));
  expect(ownerKills).toBeGreaterThanOrEqual(1);
  expect(Math.max(...peaks.values())).toBeLessThan(300);
  for (const worker of workers) {
    worker.child.kill('SIGTERM');
    await worker.exited;
  }
});
