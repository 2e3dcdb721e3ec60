/**
 * A hung batch key (issue 14): every batch of one key of 8 hangs past
 * `timeoutSeconds`. One `sheaf worker` process, `concurrency: 4` (so at most
 * 3 slots for one key, the default `maxConcurrencyPerKey`). The other keys'
 * throughput, measured against a clean run of the same size in the same test,
 * must stay at least half of it.
 */
import { afterAll, expect, test } from 'vitest';
import type { SheafClient } from '../../src/client/client.js';
import type { CliProcess } from '../support/cli.js';
import { connectClient, faultRun, pick, recordFigures, startWorker, type FaultRun } from './support.js';

const workers: CliProcess[] = [];
afterAll(async () => {
  for (const w of workers) w.child.kill('SIGKILL');
});

const KEYS = 8;

/**
 * Dispatches `total` tasks round the keys; waits for the results of every key
 * but `ignoredKey` (its tasks are dispatched and left: they hang) with at most
 * `window` awaiting. Resolves with the seconds until the last awaited result.
 */
async function timeOtherKeys(
  client: SheafClient,
  total: number,
  ignoredKey: string | null,
  window = 2000,
): Promise<{ seconds: number; tasks: number }> {
  let inFlight = 0;
  let wake: (() => void) | null = null;
  let awaited = 0;
  const pending: Promise<unknown>[] = [];
  const started = Date.now();
  for (let i = 0; i < total; i++) {
    const key = `key-${i % KEYS}`;
    const stub = client.service<{ work(input: string): Promise<string> }>('Fault', { meta: { batchKey: key } });
    if (key === ignoredKey) {
      pending.push(client.dispatch(stub).work(`${i}`));
      continue;
    }
    while (inFlight >= window) await new Promise<void>((resolve) => (wake = resolve));
    inFlight += 1;
    awaited += 1;
    pending.push(
      client
        .dispatch(stub)
        .work(`${i}`)
        .then((handle) => handle.result())
        .then((value) => {
          expect(value).toBe(`done ${i}`);
          inFlight -= 1;
          wake?.();
          wake = null;
        }),
    );
  }
  await Promise.all(pending);
  return { seconds: (Date.now() - started) / 1000, tasks: awaited };
}

async function measure(hungKey: string | null, total: number): Promise<{ seconds: number; tasks: number; run: FaultRun }> {
  const run = await faultRun('concurrency: 4\n      timeoutSeconds: 2\n      batch: { maxMessages: 100, maxSeconds: 0.2 }');
  const worker = await startWorker({ ...run, env: { ...run.env, ...(hungKey ? { FAULT_HANG_KEY: hungKey } : {}) } });
  workers.push(worker);
  const { client, close } = await connectClient(run);
  try {
    return { ...(await timeOtherKeys(client, total, hungKey)), run };
  } finally {
    await close();
    // Its hung batches never end: the worker is killed, not drained (the broker keeps their tasks).
    worker.child.kill('SIGKILL');
    await worker.exited;
  }
}

test('one hung key of 8: the other keys keep at least half their clean throughput', async () => {
  const total = pick(40_000, 8_000);
  const clean = await measure(null, total);
  const hung = await measure('key-0', total);
  const cleanRate = clean.tasks / clean.seconds;
  const hungRate = hung.tasks / hung.seconds;
  await recordFigures('hungKey', {
    tasks: total,
    otherKeysTasks: hung.tasks,
    cleanSeconds: clean.seconds.toFixed(1),
    cleanTasksPerSecond: Math.round(cleanRate),
    hungSeconds: hung.seconds.toFixed(1),
    hungOtherKeysTasksPerSecond: Math.round(hungRate),
    share: (hungRate / cleanRate).toFixed(2),
  });
  expect(hungRate / cleanRate).toBeGreaterThanOrEqual(0.5);
});
