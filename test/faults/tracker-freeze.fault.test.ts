/**
 * The active job tracker frozen, not killed (issue 17's fencing): the worker
 * whose tracker is active is stopped with SIGSTOP while a job runs, for as
 * long as the broker takes to notice (its keepalive, 30-60 s) and the other
 * worker's tracker to take over; then it is woken with SIGCONT, its state
 * stale, its timers due. It must write nothing that counts (its exclusive
 * producer is fenced), stand down, and the job must still end counted
 * exactly, finished once, with one onComplete task id; no client may see a
 * job's progress go back.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, expect, test } from 'vitest';
import { JOB_STATE_TOPIC } from '../../src/topics.js';
import { decodeJobState } from '../../src/wire/job-events.js';
import { startCli, type CliProcess } from '../support/cli.js';
import { connectClient, jobFaultRun, pick, recordFigures, startWorker, trackerOwnerPid, watchFinishedMarks } from './support.js';

const processes: CliProcess[] = [];
const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const p of processes) {
    p.child.kill('SIGCONT');
    p.child.kill('SIGKILL');
  }
  await Promise.all(processes.map((p) => p.exited));
  for (const cleanup of cleanups) await cleanup();
});

/** Polls `check` every 500 ms until it returns a value, at most `timeoutMs` (then fails naming `what`). */
async function until<T>(what: string, timeoutMs: number, check: () => Promise<T | null | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== null && value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

test('the active tracker frozen past the broker keepalive, woken after a takeover: fenced and stood down; the job counted exactly, finished once', async () => {
  const lines = pick(200_000, 20_000);
  const { run, callbackLog, env, runArgs } = await jobFaultRun(lines);

  const { client, transport, close } = await connectClient(run);
  cleanups.push(close);
  const finished = await watchFinishedMarks(transport);
  // Every status on the topic: those a tracker of an older term publishes after a newer term's are counted (clients drop them).
  const statusReader = await transport.subscribe({
    topic: JOB_STATE_TOPIC,
    subscription: 'status-reader',
    maxUnacked: 5000,
    durable: false,
  });
  let highestEpoch = -1;
  let staleStatuses = 0;
  let reading = true;
  const read = (async () => {
    while (reading) {
      const messages = await statusReader.receiveMany(5000).catch(() => []);
      for (const m of messages) {
        const decoded = decodeJobState(m.payload);
        if (!('status' in decoded) || decoded.epoch === undefined) continue;
        if (decoded.epoch < highestEpoch) staleStatuses += 1;
        highestEpoch = Math.max(highestEpoch, decoded.epoch);
      }
      await statusReader.ackAll(messages).catch(() => undefined);
    }
  })();

  const workers = [await startWorker({ ...run, env }), await startWorker({ ...run, env })];
  processes.push(...workers);
  const dispatcher = startCli(runArgs, env);
  processes.push(dispatcher);
  await dispatcher.waitFor(/"jobId"/);
  const jobId = JSON.parse(dispatcher.stdout().split('\n')[0]!).jobId as string;
  const job = await client.attachJob(jobId);
  // What this client's job.status() said, in order: it must never go back.
  const seen: number[] = [];
  const settled = async (): Promise<number> => {
    const s = await job.status().catch(() => null);
    if (s) seen.push(s.succeeded + s.failed + s.deadLettered);
    return seen.at(-1) ?? 0;
  };

  await until('a third of the job settled', 120_000, async () => ((await settled()) >= lines / 3 ? true : null));
  const ownerPid = await until('an active tracker', 30_000, () => trackerOwnerPid(run));
  const frozen = workers.find((w) => w.child.pid === ownerPid)!;
  const other = workers.find((w) => w !== frozen)!;
  expect(frozen).toBeDefined();
  const frozenAt = Date.now();
  frozen.child.kill('SIGSTOP');
  // The broker notices the frozen connection by its keepalive; the other tracker then takes the snapshots topic.
  await until("the other worker's tracker active", 180_000, async () => ((await trackerOwnerPid(run)) === other.child.pid ? true : null));
  const takeoverSeconds = (Date.now() - frozenAt) / 1000;
  const before = await settled();
  await until('more settled under the new tracker', 120_000, async () => ((await settled()) > before ? true : null));
  frozen.child.kill('SIGCONT');
  const frozenSeconds = (Date.now() - frozenAt) / 1000;
  await frozen.waitFor(/job tracker lost its term/);
  const stoodDown = (frozen.stdout() + frozen.stderr()).split('\n').find((l) => l.includes('job tracker lost its term'))!;
  // Its exclusive producer came back to find the topic taken: fenced, so nothing it wrote after waking was stored.
  expect(stoodDown).toContain('fenced: another tracker took sheaf-job-snapshots over');

  expect(await dispatcher.exited).toBe(0);
  const final = JSON.parse(dispatcher.stdout().trim().split('\n').pop()!) as Record<string, unknown>;
  const callbacks = async (): Promise<string[]> =>
    (await readFile(callbackLog, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' ')[0]!);
  await until('onComplete run', 60_000, async () => ((await callbacks()).length > 0 ? true : null));
  await finished.caughtUp(run);
  await settled();
  reading = false;
  await statusReader.close();
  await read;

  const wentBack = seen.filter((n, i) => i > 0 && n < seen[i - 1]!).length;
  await recordFigures('tracker-freeze', {
    lines,
    frozenSeconds: frozenSeconds.toFixed(1),
    takeoverSeconds: takeoverSeconds.toFixed(1),
    succeeded: Number(final.succeeded),
    finishedMarks: finished.marks.size,
    onCompleteTaskIds: new Set(await callbacks()).size,
    onCompleteRuns: (await callbacks()).length,
    staleStatusesOnTopic: staleStatuses,
    clientStatusesRead: seen.length,
    clientStatusesThatWentBack: wentBack,
  });
  expect(final).toMatchObject({ jobId, total: lines, succeeded: lines, failed: 0, deadLettered: 0, pending: 0 });
  expect(finished.marks.size).toBe(1);
  expect(new Set(await callbacks())).toEqual(new Set([`${jobId}:finished`]));
  expect(wentBack).toBe(0);
  // The woken tracker stood by; it is a standby, not a second writer.
  expect(await trackerOwnerPid(run)).toBe(other.child.pid);
  for (const worker of workers) {
    worker.child.kill('SIGTERM');
    await worker.exited;
  }
});
