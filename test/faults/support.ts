import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { appendFile, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { inject } from 'vitest';
import { SheafClient } from '../../src/client/client.js';
import { PulsarTransport } from '../../src/transport/pulsar/pulsar-transport.js';
import { startCli, type CliProcess } from '../support/cli.js';
import { testLogger } from '../support/logger.js';
import { admin, freshNamespace, pulsarUrl } from '../support/pulsar.js';
import { JOB_SNAPSHOTS_TOPIC } from '../../src/topics.js';
import { decodeJobEvent } from '../../src/wire/job-events.js';

const brokerScript = new URL('../../scripts/pulsar.sh', import.meta.url).pathname;

/** Runs `scripts/pulsar.sh <command>` (start, stop, kill) against the shared broker. */
export async function brokerCommand(command: 'start' | 'stop' | 'kill'): Promise<void> {
  await promisify(execFile)('bash', [brokerScript, command]);
}

/**
 * Whether this run may stop and start the broker: one that scripts/pulsar.sh
 * started (CI's, or the test setup's). In CI (SHEAF_REQUIRE_PULSAR=1) the
 * runs that need it never skip.
 */
export const brokerRestartable: boolean =
  process.env.SHEAF_REQUIRE_PULSAR === '1' ||
  (await promisify(execFile)('bash', [brokerScript, 'status']).then(
    () => true,
    () => false,
  ));

/** `full` for `npm run test:faults`, `short` for CI (FAULTS_SCALE=short). */
export const scale = process.env.FAULTS_SCALE === 'short' ? 'short' : 'full';
export const pick = <T>(full: T, short: T): T => (scale === 'full' ? full : short);

const faultService = new URL('./fixtures/fault-service.mjs', import.meta.url).pathname;
const statWorker = new URL('./fixtures/stat-worker.mjs', import.meta.url).pathname;

export interface FaultRun {
  readonly config: string;
  readonly namespace: string;
  readonly execLog: string;
  readonly env: NodeJS.ProcessEnv;
}

/** A namespace, a sheaf.yml for the fault service, and its execution log. */
export async function faultRun(executor = 'concurrency: 4\n      batch: { maxMessages: 100, maxSeconds: 0.2 }'): Promise<FaultRun> {
  const dir = await mkdtemp(join(tmpdir(), 'sheaf-faults-'));
  const namespace = await freshNamespace();
  const config = join(dir, 'sheaf.yml');
  await writeFile(
    config,
    `name: fault-worker
transport: pulsar
pulsar:
  brokerServiceUrl: ${pulsarUrl()}
  namespace: ${namespace}
  connectThroughServiceUrl: ${inject('pulsarThroughServiceUrl')}
  nackRedeliveryDelayMs: 200
logs: { level: info, pretty: false }
services:
  - name: Fault
    executor:
      module: ${faultService}
      export: FaultService
      ${executor}
      retry: { minimumSeconds: 0.1, maximumSeconds: 0.5, randomFactor: 0, maximumRetries: 2 }
`,
  );
  const execLog = join(dir, 'executions.log');
  await writeFile(execLog, '');
  return { config, namespace, execLog, env: { FAULT_EXEC_LOG: execLog } };
}

export async function startWorker(run: FaultRun): Promise<CliProcess> {
  const worker = startCli(['worker', '-c', run.config], run.env);
  await worker.waitFor(/"msg":"worker ready"/);
  return worker;
}

/** A worker that reports its peak in-flight tasks and RSS when it gets SIGTERM. */
export function startStatWorker(run: FaultRun): {
  stop(): Promise<{ maxInFlight: number; maxOpenAggregates: number; peakRssMiB: number }>;
  ready: Promise<void>;
} {
  const child = spawn(process.execPath, [statWorker, run.config], {
    env: { ...process.env, ...run.env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  let onReady: () => void = () => undefined;
  let onExit: (code: number | null) => void = () => undefined;
  const ready = new Promise<void>((resolve, reject) => {
    onReady = resolve;
    // A worker that dies before it is ready (it could not start) fails the run instead of leaving it waiting.
    onExit = (code) => reject(new Error(`stat-worker exited with ${code} before it was ready:\n${out}`));
  });
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString();
    if (out.includes('stat-worker ready')) onReady();
  });
  const exited = new Promise<void>((resolve) =>
    child.on('close', (code) => {
      onExit(code);
      resolve();
    }),
  );
  return {
    ready,
    async stop() {
      child.kill('SIGTERM');
      await exited;
      return JSON.parse(out.trim().split('\n').pop()!) as { maxInFlight: number; maxOpenAggregates: number; peakRssMiB: number };
    },
  };
}

export async function connectClient(run: FaultRun): Promise<{ client: SheafClient; close(): Promise<void>; transport: PulsarTransport }> {
  const transport = new PulsarTransport({
    brokerServiceUrl: pulsarUrl(),
    namespace: run.namespace,
    logger: testLogger,
    connectThroughServiceUrl: inject('pulsarThroughServiceUrl'),
  });
  const client = await SheafClient.connect({ transport, logger: testLogger, maxUnackedResults: 5000 });
  return { client, transport, close: async () => (await client.close(), await transport.close()) };
}

/** Executions per task id, from the fault service's log. */
export async function executionsPerTask(run: FaultRun): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const { taskId } of await executionLog(run)) counts.set(taskId, (counts.get(taskId) ?? 0) + 1);
  return counts;
}

/** One execution of a task, as the fault service logged it: which worker process, when it started. */
export interface Execution {
  readonly taskId: string;
  readonly pid: number;
  readonly startedAt: number;
  /** The task's input, as the service got it. */
  readonly input: string;
}

/** Every execution the run's workers logged, in the order they were logged. */
export async function executionLog(run: FaultRun): Promise<Execution[]> {
  const executions: Execution[] = [];
  for (const line of (await readFile(run.execLog, 'utf8')).split('\n')) {
    const [taskId, pid, startedAt, input] = line.split(' ');
    if (taskId) executions.push({ taskId, pid: Number(pid), startedAt: Number(startedAt), input: input ?? '' });
  }
  return executions;
}

/**
 * Dispatches `total` tasks through `client` with at most `window` awaiting
 * their result, calling `onProgress` after each result. Resolves with the
 * task ids and whether every result was the expected one.
 */
export async function dispatchAll(
  client: SheafClient,
  total: number,
  keys: (i: number) => string,
  onProgress: (done: number) => void,
  window = 2000,
): Promise<{ ids: string[]; wrong: number }> {
  const ids: string[] = new Array(total);
  let done = 0;
  let wrong = 0;
  let inFlight = 0;
  let wake: (() => void) | null = null;
  const pending: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    while (inFlight >= window) await new Promise<void>((resolve) => (wake = resolve));
    inFlight += 1;
    const stub = client.service<{ work(input: string): Promise<string> }>('Fault', { meta: { batchKey: keys(i) } });
    // Not awaited one by one: sends are pipelined (the producer bounds what is pending).
    pending.push(
      client
        .dispatch(stub)
        .work(`${i}`)
        .then((handle) => {
          ids[i] = handle.id;
          return handle.result();
        })
        .then((value) => {
          if (value !== `done ${i}`) wrong += 1;
          inFlight -= 1;
          done += 1;
          onProgress(done);
          wake?.();
          wake = null;
        }),
    );
  }
  await Promise.all(pending);
  return { ids, wrong };
}

/**
 * Records one scenario's figures in reports/faults-<scale>.json (files run one
 * at a time, so read-modify-write is safe) and prints them. docs/reliability.md
 * quotes the full run's file.
 */
export async function recordFigures(scenario: string, values: Record<string, number | string>): Promise<void> {
  const file = new URL(`../../reports/faults-${scale}.json`, import.meta.url);
  await mkdir(new URL('.', file), { recursive: true });
  const all = (await readFile(file, 'utf8').then(JSON.parse, () => ({}))) as Record<string, unknown>;
  all[scenario] = { ...values, recordedAt: new Date().toISOString() };
  await writeFile(file, `${JSON.stringify(all, null, 2)}\n`);
  console.log(scenario, values);
}

/** The pid of the process whose connection to the broker has local port `port` (from `ss`). */
async function pidOfLocalPort(port: string): Promise<number | null> {
  const { stdout } = await promisify(execFile)('ss', ['-tnpH', `sport = :${port}`]);
  const pid = /pid=(\d+)/.exec(stdout)?.[1];
  return pid === undefined ? null : Number(pid);
}

/** The pid of the worker whose job tracker is the active one now: the holder of the snapshots topic's exclusive producer. */
export async function trackerOwnerPid(run: FaultRun): Promise<number | null> {
  const stats = (await admin('GET', `persistent/public/${run.namespace}/${JOB_SNAPSHOTS_TOPIC}/stats`)) as {
    publishers: Array<{ address: string }>;
  };
  const port = stats.publishers[0]?.address.split(':').pop();
  return port === undefined ? null : pidOfLocalPort(port);
}

/**
 * Reads every snapshot the job trackers write, from now on, and keeps the
 * distinct finished marks (`finishedAt`): a job finished once has one,
 * however many snapshots carry it. Subscribe before the job starts.
 */
export async function watchFinishedMarks(transport: PulsarTransport): Promise<{
  readonly marks: ReadonlySet<number>;
  /** Waits until the watcher has read everything written so far, then stops it. */
  caughtUp(run: FaultRun): Promise<void>;
}> {
  const observer = await transport.subscribe({ topic: JOB_SNAPSHOTS_TOPIC, subscription: 'observer', maxUnacked: 5000 });
  const marks = new Set<number>();
  let observing = true;
  const observed = (async () => {
    while (observing) {
      const messages = await observer.receiveMany(5000).catch(() => []);
      for (const m of messages) {
        const decoded = decodeJobEvent(m.payload);
        if ('event' in decoded && decoded.event.kind === 'jobState' && decoded.event.finishedAt !== null)
          marks.add(decoded.event.finishedAt);
      }
      await observer.ackAll(messages).catch(() => undefined);
    }
  })();
  const backlog = async (run: FaultRun): Promise<number> =>
    (
      (await admin('GET', `persistent/public/${run.namespace}/${JOB_SNAPSHOTS_TOPIC}/stats`)) as {
        subscriptions: Record<string, { msgBacklog: number }>;
      }
    ).subscriptions.observer!.msgBacklog;
  return {
    marks,
    async caughtUp(run) {
      while ((await backlog(run)) > 0) await new Promise((r) => setTimeout(r, 200));
      observing = false;
      await observer.close();
      await observed;
    },
  };
}

/**
 * A fault run for a job of `lines` tasks: the fault service with large
 * batches, an NDJSON input of one string per line (written 100,000 lines
 * at a time), and a log the `finished` callback method appends to.
 */
export async function jobFaultRun(lines: number): Promise<{
  run: FaultRun;
  input: string;
  callbackLog: string;
  env: NodeJS.ProcessEnv;
  /** `sheaf job run` of the input on the fault service, with the `finished` onComplete callback. */
  runArgs: string[];
}> {
  const run = await faultRun('concurrency: 4\n      batch: { maxMessages: 200, maxSeconds: 0.1 }\n      maxUnacked: 4000');
  const dir = dirname(run.config);
  const input = join(dir, 'items.ndjson');
  for (let start = 0; start < lines; start += 100_000) {
    const chunk = [...Array(Math.min(100_000, lines - start)).keys()].map((i) => JSON.stringify(String(start + i))).join('\n');
    await appendFile(input, `${chunk}\n`);
  }
  const callbackLog = join(dir, 'callbacks.log');
  await writeFile(callbackLog, '');
  const runArgs = ['job', 'run', '-c', run.config, '--service', 'Fault', '--method', 'work', '--input', input].concat([
    '--callbacks-service',
    'Fault',
    '--on-complete',
    'finished',
    '--in-flight',
    '2000',
  ]);
  return { run, input, callbackLog, env: { ...run.env, FAULT_CALLBACK_LOG: callbackLog }, runArgs };
}
