/**
 * Poison tasks (issue 14): the batch method throws, or hangs past
 * `timeoutSeconds`, whenever its batch holds a poison task. Two `sheaf worker`
 * processes, 8 batch keys, maxMessages 100. With isolation (bisect, the
 * default) exactly the poison tasks are dead-lettered, every innocent task
 * succeeds on its first attempt, and an innocent runs at most
 * ⌈log2(maxMessages)⌉ + 1 extra times (the bound): one per split,
 * and one more for a copy the broker hands to the other worker (at least
 * once), which cannot know it ran.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, expect, test } from 'vitest';
import type { SheafClient } from '../../src/client/client.js';
import { TaskFailedError } from '../../src/errors.js';
import type { CliProcess } from '../support/cli.js';
import { readDeadLetters } from '../support/system.js';
import { connectClient, executionsPerTask, faultRun, pick, recordFigures, startWorker } from './support.js';

const workers: CliProcess[] = [];
afterAll(async () => {
  for (const w of workers) w.child.kill('SIGKILL');
});

const MAX_MESSAGES = 100;

/** The ids that occur more than once. */
function repeatedIds(ids: ReadonlyArray<string | undefined>): Set<string | undefined> {
  return new Set(ids.filter((id, i) => ids.indexOf(id) !== i));
}

/** Dispatches with at most `window` awaiting; resolves with each task's id, outcome and latency. */
async function dispatchWithPoison(client: SheafClient, inputs: string[], window = 2000) {
  const outcomes: Array<{ id: string; input: string; ok: boolean; attempts: number; ms: number }> = [];
  let inFlight = 0;
  let wake: (() => void) | null = null;
  const pending: Promise<void>[] = [];
  for (const [i, input] of inputs.entries()) {
    while (inFlight >= window) await new Promise<void>((resolve) => (wake = resolve));
    inFlight += 1;
    const started = Date.now();
    const stub = client.service<{ work(input: string): Promise<string> }>('Fault', { meta: { batchKey: `key-${i % 8}` } });
    pending.push(
      client
        .dispatch(stub)
        .work(input)
        .then(async (handle) => {
          const record = (ok: boolean, attempts: number): void => {
            outcomes.push({ id: handle.id, input, ok, attempts, ms: Date.now() - started });
          };
          await handle.result().then(
            () => record(true, 1),
            (error: unknown) => record(false, error instanceof TaskFailedError ? error.attempts : -1),
          );
          inFlight -= 1;
          wake?.();
          wake = null;
        }),
    );
  }
  await Promise.all(pending);
  return outcomes;
}

const scenarios = [
  {
    name: 'poison-throw',
    mode: 'throw',
    title: '20 in 20,000 (5 in 2,000 short), the batch throws',
    total: pick(20_000, 2_000),
    poison: pick(20, 5),
    oneKey: false,
    isolation: 'bisect',
  },
  {
    name: 'poison-hang',
    mode: 'hang',
    title: '20 in 20,000 (5 in 2,000 short), the batch hangs',
    total: pick(20_000, 2_000),
    poison: pick(20, 5),
    oneKey: false,
    isolation: 'bisect',
  },
  // The same without isolation (the earlier behaviour), for the before/after in docs/reliability.md.
  {
    name: 'poison-throw-no-isolation',
    mode: 'throw',
    title: '20 in 20,000 (5 in 2,000 short), the batch throws, isolation none',
    total: pick(20_000, 2_000),
    poison: pick(20, 5),
    oneKey: false,
    isolation: 'none',
  },
  // One task in a hundred of key-0 (a poison in nearly every batch of that key).
  {
    name: 'poison-one-key',
    mode: 'throw',
    title: '1 % of one key, the batch throws',
    total: pick(40_000, 8_000),
    poison: pick(50, 10),
    oneKey: true,
    isolation: 'bisect',
  },
] as const;

for (const { name, mode, title, total, poison, oneKey, isolation } of scenarios) {
  test(`poison tasks, ${title}: ${isolation === 'none' ? 'innocents go down with them' : 'only they are dead-lettered'}`, async () => {
    const run = await faultRun(
      `concurrency: 4\n      timeoutSeconds: 2\n      isolation: ${isolation}\n      batch: { maxMessages: ${MAX_MESSAGES}, maxSeconds: 0.2 }`,
    );
    const env = { ...run.env, FAULT_POISON: mode };
    for (let i = 0; i < 2; i++) workers.push(await startWorker({ ...run, env }));
    const { client, close, transport } = await connectClient(run);
    // Spread evenly over the run (over key-0's tasks only, for oneKey; tasks go round the 8 keys).
    const step = oneKey ? Math.floor(total / 8 / poison) : Math.floor(total / poison);
    const isPoison = (i: number): boolean => (oneKey ? i % 8 === 0 && (i / 8) % step === step - 1 : i % step === step - 1);
    const inputs = [...Array(total).keys()].map((i) => (isPoison(i) ? 'poison' : `${i}`));
    expect(inputs.filter((x) => x === 'poison')).toHaveLength(poison);
    const started = Date.now();
    try {
      const outcomes = await dispatchWithPoison(client, inputs);
      const seconds = (Date.now() - started) / 1000;
      const executions = await executionsPerTask(run);
      const innocents = outcomes.filter((o) => o.input !== 'poison');
      const poisoned = outcomes.filter((o) => o.input === 'poison');
      const innocentExecutions = innocents.map((o) => executions.get(o.id) ?? 0);
      const letters = await readDeadLetters(transport, 'Fault', poison);
      await recordFigures(name, {
        tasks: total,
        poison,
        deadLettered: outcomes.filter((o) => !o.ok).length,
        innocentsDeadLettered: innocents.filter((o) => !o.ok).length,
        innocentsNotOnFirstAttempt: innocents.filter((o) => o.attempts !== 1).length,
        maxInnocentExecutions: Math.max(...innocentExecutions),
        innocentsRunMoreThanOnce: innocentExecutions.filter((n) => n > 1).length,
        innocentP99Seconds: (innocents.map((o) => o.ms).sort((a, b) => a - b)[Math.floor(innocents.length * 0.99)]! / 1000).toFixed(1),
        innocentMaxSeconds: (Math.max(...innocents.map((o) => o.ms)) / 1000).toFixed(1),
        seconds: seconds.toFixed(1),
      });
      if (isolation === 'none') {
        // Without isolation the innocents go down with the poison: what isolation is for.
        expect(innocents.filter((o) => !o.ok).length).toBeGreaterThan(0);
        return;
      }
      expect(innocents.filter((o) => !o.ok)).toEqual([]);
      expect(poisoned.every((o) => !o.ok)).toBe(true);
      // A task id dead-lettered twice: its letters' attempts and writers and its executions (process, start), so that a
      // failure says where the copy came from.
      const letterIds = letters.map((l) => l.task?.taskId);
      const twice = repeatedIds(letterIds);
      const execLines = twice.size > 0 ? (await readFile(run.execLog, 'utf8')).split('\n') : [];
      expect(
        letters
          .filter((l) => twice.has(l.task?.taskId))
          .map((l) => ({
            taskId: l.task?.taskId,
            worker: l.worker,
            retrySequence: l.task?.retrySequence,
            retryIndex: l.task?.retryIndex,
            isolation: l.task?.isolation,
            deadAt: l.deadAt,
            executions: execLines.filter((line) => line.startsWith(`${l.task?.taskId} `)),
          })),
      ).toEqual([]);
      expect(new Set(letterIds).size).toBe(poison);
      expect(letters.every((l) => l.task?.args[0] === 'poison')).toBe(true);
      // The first execution, plus at most ⌈log2(maxMessages)⌉ + 1 extra ones.
      const most = innocents[innocentExecutions.indexOf(Math.max(...innocentExecutions))]!;
      expect(Math.max(...innocentExecutions), `innocent ${most.id} (input ${most.input})`).toBeLessThanOrEqual(
        1 + Math.ceil(Math.log2(MAX_MESSAGES)) + 1,
      );
    } finally {
      await close();
      for (const w of workers.splice(0)) {
        w.child.kill('SIGTERM');
        await w.exited;
      }
    }
  });
}
