/**
 * Many small jobs at once (issue 17's figure): `jobs` jobs of `tasksEach`
 * tasks, all created, filled and sealed concurrently, each with an
 * onComplete callback. Measures how long until every one finished, that
 * each called back once, and how fast a status is answered while the
 * tracker is loaded: another client attaches to jobs it has never seen and
 * asks, one every `ASK_EVERY_MS` while the tracker folds and calls back. Its
 * first attach loads its table of job statuses from the tracker (timed
 * apart); each later status answers from that table.
 */
import 'reflect-metadata';
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { SheafClient } from '../src/client/client.js';
import { Batch } from '../src/service/decorators.js';
import type { Transport } from '../src/transport/transport.js';
import type { JobStatus } from '../src/wire/job-events.js';
import { SheafWorker } from '../src/worker/worker.js';
import { percentile } from './end-to-end.js';

const quiet = pino({ level: 'silent' });
const run = promisify(execFile);

export interface ManyJobs {
  readonly jobs: number;
  readonly tasksEach: number;
  /** From the first job created to the last callback run. */
  readonly seconds: number;
  /** Jobs whose onComplete ran (at least once). */
  readonly calledBack: number;
  /** onComplete executions beyond one per job. */
  readonly extraCallbacks: number;
  /** Attaches and statuses timed after the first. */
  readonly statusSamples: number;
  /** The asker's first attach and status: the attach loads the asker's table of job statuses from the tracker. */
  readonly firstStatusMs: number;
  /** Attach and status of each later job (never seen before by the asker). */
  readonly statusP50Ms: number;
  readonly statusP99Ms: number;
  readonly statusMaxMs: number;
}

/** The pause between two status asks: spread over the seconds the tracker is still busy. */
export const ASK_EVERY_MS = 20;

interface Rows {
  insert(row: number): Promise<void>;
}

/**
 * Attaches to `jobIds` (never seen by the asker) and asks each for its
 * status, one every `ASK_EVERY_MS`; resolves with each attach and status's
 * milliseconds, in order.
 */
export type StatusAsker = (jobIds: string[]) => Promise<number[]>;

/**
 * A status asker in a process of its own (bench/fixtures/status-asker.mjs),
 * as a dashboard or `sheaf job status` is: its times are not those of an
 * event loop shared with the worker and the load.
 */
export function processAsker(broker: { url: string; namespace: string }): StatusAsker {
  return async (jobIds) => {
    const dir = await mkdtemp(join(tmpdir(), 'sheaf-bench-'));
    const file = join(dir, 'jobs.txt');
    await writeFile(file, jobIds.join('\n'));
    const { stdout } = await run(process.execPath, [
      new URL('./fixtures/status-asker.mjs', import.meta.url).pathname,
      broker.url,
      broker.namespace,
      file,
      String(ASK_EVERY_MS),
    ]);
    return JSON.parse(stdout.trim().split('\n').pop()!) as number[];
  };
}

export async function manySmallJobs(transport: Transport, jobs: number, tasksEach: number, ask?: StatusAsker): Promise<ManyJobs> {
  const callbacks = new Map<string, number>();
  let allCalledBack: () => void = () => undefined;
  const calledBack = new Promise<void>((resolve) => (allCalledBack = resolve));
  class RowsService {
    insert(_row: number): void {}
    @Batch('insert')
    async insertMany(_rows: Map<string, number>): Promise<void> {}
    finished(_status: JobStatus): void {}
    @Batch('finished')
    async finishedMany(tasks: Map<string, JobStatus>): Promise<void> {
      for (const taskId of tasks.keys()) callbacks.set(taskId, (callbacks.get(taskId) ?? 0) + 1);
      if (callbacks.size >= jobs) allCalledBack();
    }
  }
  const worker = new SheafWorker({
    transport,
    logger: quiet,
    services: [
      {
        name: 'Rows',
        executor: { factory: () => new RowsService(), concurrency: 4, maxUnacked: 4000, batch: { maxMessages: 100, maxSeconds: 0.05 } },
      },
    ],
  });
  await worker.start();
  const client = await SheafClient.connect({ transport, logger: quiet });
  const asker = await SheafClient.connect({ transport, logger: quiet });
  try {
    const rows = client.service<Rows>('Rows');
    const started = performance.now();
    const ids: string[] = [];
    const creating: Promise<void>[] = [];
    for (let j = 0; j < jobs; j++) {
      creating.push(
        (async () => {
          const job = await client.job({ callbacks: { service: 'Rows', onComplete: 'finished' } });
          ids.push(job.jobId);
          await Promise.all(
            [...Array(tasksEach).keys()].map((i) => job.dispatch(rows, { fireAndForget: true, batchKey: job.jobId }).insert(i)),
          );
          await job.seal();
        })(),
      );
      // A thousand jobs under way at a time: creating them all at once only queues them in the client.
      if (creating.length >= 1000) await Promise.all(creating.splice(0));
    }
    await Promise.all(creating);
    // Statuses asked while the tracker still folds and calls back: jobs the asker never saw, spread over all.
    const samples = Math.min(200, ids.length);
    const sampled = [...Array(samples).keys()].map((k) => ids[Math.floor((k * ids.length) / samples)]!);
    const latencies = ask
      ? await ask(sampled)
      : await (async () => {
          const times: number[] = [];
          for (const jobId of sampled) {
            const t = performance.now();
            const attached = await asker.attachJob(jobId);
            await attached.status();
            times.push(performance.now() - t);
            await delay(ASK_EVERY_MS);
          }
          return times;
        })();
    await calledBack;
    const seconds = (performance.now() - started) / 1000;
    const firstStatusMs = latencies[0] ?? NaN;
    const later = latencies.slice(1).sort((a, b) => a - b);
    return {
      jobs,
      tasksEach,
      seconds,
      calledBack: callbacks.size,
      extraCallbacks: [...callbacks.values()].reduce((n, c) => n + c - 1, 0),
      statusSamples: later.length,
      firstStatusMs,
      statusP50Ms: percentile(later, 50),
      statusP99Ms: percentile(later, 99),
      statusMaxMs: later.at(-1) ?? NaN,
    };
  } finally {
    await worker.close();
    await asker.close();
    await client.close();
    await transport.close();
  }
}
