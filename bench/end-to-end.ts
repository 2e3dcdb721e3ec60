/**
 * Sheaf end to end: tasks per second from dispatch to result received, for a
 * batch method that does no work, and latency percentiles at low load (one
 * task at a time: it waits about maxSeconds in its aggregate) and at
 * saturation (everything dispatched at once).
 */
import 'reflect-metadata';
import { pino } from 'pino';
import { SheafClient } from '../src/client/client.js';
import { NonRetryableError } from '../src/errors.js';
import { Batch } from '../src/service/decorators.js';
import type { Transport } from '../src/transport/transport.js';
import { SheafWorker } from '../src/worker/worker.js';

const quiet = pino({ level: 'silent' });

class NoWork {
  run(_input: number): void {}
  @Batch('run')
  async runMany(tasks: Map<string, number>): Promise<Map<string, number>> {
    return tasks;
  }
}

/** Fails every task for good (a per-task error, so no isolation): each ends as a dead letter. */
class FailsEveryTask {
  run(_input: number): void {}
  @Batch('run')
  async runMany(tasks: Map<string, number>): Promise<Map<string, unknown>> {
    return new Map([...tasks.keys()].map((id) => [id, new NonRetryableError('fails for good')]));
  }
}

interface NoWorkClient {
  run(input: number): Promise<number>;
}

export interface EndToEnd {
  readonly tasksPerSecond: number;
  readonly saturatedP50Ms: number;
  readonly saturatedP99Ms: number;
}

export const percentile = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

async function withSystem<T>(
  transport: Transport,
  executor: { concurrency: number; maxMessages: number; maxSeconds: number; service?: () => object },
  use: (client: SheafClient) => Promise<T>,
): Promise<T> {
  const { concurrency, maxMessages, maxSeconds } = executor;
  const worker = new SheafWorker({
    transport,
    logger: quiet,
    services: [
      {
        name: 'Bench',
        executor: {
          factory: executor.service ?? (() => new NoWork()),
          concurrency,
          // One batch key in these runs: let it use every slot (the default keeps one for other keys).
          maxConcurrencyPerKey: concurrency,
          maxUnacked: Math.max(2 * concurrency * maxMessages, 2000),
          batch: { maxMessages, maxSeconds },
        },
      },
    ],
  });
  await worker.start();
  const client = await SheafClient.connect({ transport, logger: quiet, maxUnackedResults: 5000 });
  try {
    return await use(client);
  } finally {
    await worker.close();
    await client.close();
    await transport.close();
  }
}

/** Dispatches `total` tasks at once (up to `window` awaiting) and times each from dispatch to result. */
async function saturate(
  client: SheafClient,
  total: number,
  window: number,
  call?: (stub: NoWorkClient, i: number) => Promise<unknown>,
): Promise<{ seconds: number; latencies: number[] }> {
  const stub = client.service<NoWorkClient>('Bench', { meta: { batchKey: 'k' } });
  const run = call ?? ((s: NoWorkClient, i: number) => s.run(i));
  const latencies: number[] = [];
  let inFlight = 0;
  let wake: (() => void) | null = null;
  const all: Promise<void>[] = [];
  const started = performance.now();
  for (let i = 0; i < total; i++) {
    while (inFlight >= window) await new Promise<void>((resolve) => (wake = resolve));
    inFlight += 1;
    const t = performance.now();
    all.push(
      run(stub, i).then(() => {
        latencies.push(performance.now() - t);
        inFlight -= 1;
        wake?.();
        wake = null;
      }),
    );
  }
  await Promise.all(all);
  return { seconds: (performance.now() - started) / 1000, latencies: latencies.sort((a, b) => a - b) };
}

/**
 * `handles`: dispatch through `client.dispatch(stub)` and await each
 * handle's result (the form a job's tasks take), instead of awaiting the
 * stub's method: for comparing like with like.
 */
export async function endToEnd(transport: Transport, maxMessages: number, total: number, handles = false): Promise<EndToEnd> {
  return withSystem(transport, { concurrency: 4, maxMessages, maxSeconds: 0.05 }, async (client) => {
    const call = handles ? (stub: NoWorkClient, i: number) => client.dispatch(stub).run(i).then((h) => h.result()) : undefined;
    await saturate(client, Math.min(total, 2000), 10_000, call); // warm-up: connections, JIT
    const { seconds, latencies } = await saturate(client, total, 10_000, call);
    return { tasksPerSecond: total / seconds, saturatedP50Ms: percentile(latencies, 50), saturatedP99Ms: percentile(latencies, 99) };
  });
}

/**
 * Tasks that fail for good, per second from dispatch to the failure result:
 * each writes a dead letter (through a producer named after its attempt,
 * so that copies on two workers leave one) before its result goes.
 */
export async function deadLetterRate(transport: Transport, total: number): Promise<EndToEnd> {
  const executor = { concurrency: 4, maxMessages: 100, maxSeconds: 0.05, service: () => new FailsEveryTask() };
  return withSystem(transport, executor, async (client) => {
    const failing = (stub: NoWorkClient, i: number) =>
      stub.run(i).then(
        () => {
          throw new Error('a task that fails for good succeeded');
        },
        () => undefined,
      );
    await saturate(client, Math.min(total, 500), 10_000, failing); // warm-up
    const { seconds, latencies } = await saturate(client, total, 10_000, failing);
    return { tasksPerSecond: total / seconds, saturatedP50Ms: percentile(latencies, 50), saturatedP99Ms: percentile(latencies, 99) };
  });
}

/**
 * The same as `endToEnd`, every task in one job (`job.dispatch`), each
 * result awaited as without a job; then the job is sealed and awaited
 * (`secondsToDone`: from the seal to the tracker's finished mark).
 */
export async function endToEndInJob(
  transport: Transport,
  maxMessages: number,
  total: number,
): Promise<EndToEnd & { secondsToDone: number }> {
  return withSystem(transport, { concurrency: 4, maxMessages, maxSeconds: 0.05 }, async (client) => {
    const warmUp = await client.job();
    await saturate(client, Math.min(total, 2000), 10_000, (stub, i) =>
      warmUp
        .dispatch(stub)
        .run(i)
        .then((h) => h.result()),
    );
    const job = await client.job({ name: 'bench' });
    const { seconds, latencies } = await saturate(client, total, 10_000, (stub, i) =>
      job
        .dispatch(stub)
        .run(i)
        .then((h) => h.result()),
    );
    const sealedAt = performance.now();
    await job.seal();
    const final = await job.done({ timeoutMs: 120_000 });
    if (final.succeeded !== total) throw new Error(`job counted ${final.succeeded} of ${total} tasks`);
    return {
      tasksPerSecond: total / seconds,
      saturatedP50Ms: percentile(latencies, 50),
      saturatedP99Ms: percentile(latencies, 99),
      secondsToDone: (performance.now() - sealedAt) / 1000,
    };
  });
}

/** One task at a time: each waits for its aggregate's maxSeconds. */
export async function lowLoadLatency(transport: Transport, maxSeconds: number, samples: number): Promise<{ p50Ms: number; p99Ms: number }> {
  return withSystem(transport, { concurrency: 4, maxMessages: 100, maxSeconds }, async (client) => {
    const stub = client.service<NoWorkClient>('Bench', { meta: { batchKey: 'k' } });
    const latencies: number[] = [];
    for (let i = 0; i < samples; i++) {
      const t = performance.now();
      await stub.run(i);
      latencies.push(performance.now() - t);
    }
    latencies.sort((a, b) => a - b);
    return { p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
  });
}

class FixedCostSink {
  constructor(private readonly costMs: number) {}
  run(_input: number): void {}
  @Batch('run')
  async runMany(tasks: Map<string, number>): Promise<Map<string, number>> {
    await new Promise((resolve) => setTimeout(resolve, this.costMs)); // the sink's cost: the same for 1 or 1,000 tasks
    return tasks;
  }
}

/** Throughput against a sink costing `costMs` per call, with concurrency 1. */
export async function sinkThroughput(transport: Transport, maxMessages: number, total: number, costMs = 5): Promise<number> {
  return withSystem(
    transport,
    { concurrency: 1, maxMessages, maxSeconds: 0.05, service: () => new FixedCostSink(costMs) },
    async (client) => {
      const { seconds } = await saturate(client, total, 10_000);
      return total / seconds;
    },
  );
}

/** Memory per in-flight task: heap growth while `count` tasks are received and held unsettled. */
export async function memoryPerTask(transport: Transport, count: number): Promise<number> {
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (release = resolve));
  let arrived = 0;
  let allArrived: () => void = () => undefined;
  const everyoneIn = new Promise<void>((resolve) => (allArrived = resolve));
  class Holding {
    run(_input: number): void {}
    @Batch('run')
    async runMany(tasks: Map<string, number>): Promise<Map<string, number>> {
      arrived += tasks.size;
      if (arrived >= count) allArrived();
      await held;
      return tasks;
    }
  }
  const gc = (globalThis as { gc?: () => void }).gc;
  return withSystem(
    transport,
    { concurrency: count / 100, maxMessages: 100, maxSeconds: 0.05, service: () => new Holding() },
    async (client) => {
      gc?.();
      const before = process.memoryUsage().heapUsed;
      const stub = client.service<NoWorkClient>('Bench', { meta: { batchKey: 'k' } });
      const results = [...Array(count)].map((_, i) => stub.run(i));
      await everyoneIn;
      gc?.();
      const perTask = (process.memoryUsage().heapUsed - before) / count;
      release();
      await Promise.all(results);
      return perTask;
    },
  );
}
