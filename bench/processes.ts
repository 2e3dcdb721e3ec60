/**
 * Sheaf measured process by process, as users deploy it: a worker process
 * alone draining tasks loaded before it started (with its CPU time), one
 * client process dispatching, client and worker in processes of their own
 * end to end, and the Java client's batchReceive draining the same tasks
 * (what a Pulsar user would write instead of Sheaf).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { PulsarTransport } from '../src/transport/pulsar/pulsar-transport.js';
import { CLIENT_SUBSCRIPTION, resultTopic, taskTopic, WORKER_SUBSCRIPTION } from '../src/topics.js';
import { encodeEnvelope, type ResultEnvelope, type TaskEnvelope } from '../src/wire/envelopes.js';
import { rawTask } from '../test/support/tasks.js';

const run = promisify(execFile);
const root = new URL('..', import.meta.url).pathname;
const cli = `${root}dist/cli/main.js`;

export interface Broker {
  readonly url: string;
  readonly namespace: string;
}

/** Loads `count` fire-and-forget tasks for `service` over 8 batch keys, before any worker runs. */
export async function loadTasks(broker: Broker, service: string, count: number, subscription = WORKER_SUBSCRIPTION): Promise<void> {
  const transport = new PulsarTransport({
    brokerServiceUrl: broker.url,
    namespace: broker.namespace,
    logger: pino({ level: 'warn' }),
    producer: { batchingMaxMessages: 500, batchingMaxDelayMs: 5, maxPendingMessages: 10_000 },
  });
  try {
    await transport.ensureSubscription(taskTopic(service), subscription);
    const producer = await transport.createProducer(taskTopic(service));
    const sends: Promise<string>[] = [];
    for (let i = 0; i < count; i++) {
      const key = `k${i % 8}`;
      const task: TaskEnvelope = { ...rawTask(`t-${i}`, service, 'run', [i]), meta: { batchKey: key } };
      sends.push(producer.send({ payload: encodeEnvelope(task), key }));
      if (sends.length >= 10_000) await Promise.all(sends.splice(0));
    }
    await Promise.all(sends);
    await producer.close();
  } finally {
    await transport.close();
  }
}

async function writeConfig(broker: Broker, service: string, maxMessages: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sheaf-bench-'));
  const file = join(dir, 'sheaf.yml');
  await writeFile(
    file,
    `name: bench-worker
transport: pulsar
pulsar: { brokerServiceUrl: ${broker.url}, namespace: ${broker.namespace} }
logs: { level: warn, pretty: false }
services:
  - name: ${service}
    executor:
      module: ${root}bench/fixtures/no-work-service.mjs
      export: NoWork
      concurrency: 4
      maxUnacked: ${Math.max(2000, 8 * maxMessages)}
      batch: { maxMessages: ${maxMessages}, maxSeconds: 0.05 }
`,
  );
  return file;
}

/** A `sheaf worker` process with its metrics endpoint; resolves once it serves. */
async function startWorker(config: string): Promise<{ child: ChildProcess; metricsUrl: string }> {
  const child = spawn(process.execPath, [cli, 'worker', '-c', config, '--metrics-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  const metricsUrl = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (chunk: Buffer) => {
      err += chunk.toString();
      const match = /metrics and health on (http:\/\/[\d.]+:\d+)/.exec(err);
      if (match) resolve(match[1]!);
    });
    child.once('exit', (code) => reject(new Error(`the worker exited with ${code}: ${err}`)));
  });
  // Ready when /readyz says so.
  for (;;) {
    const ready = await fetch(`${metricsUrl}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) return { child, metricsUrl };
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function succeeded(metricsUrl: string): Promise<number> {
  const text = await (await fetch(`${metricsUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('sheaf_tasks_succeeded_total{'));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

/** CPU seconds (user + system) a process has used so far (Linux /proc). */
async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

export interface WorkerAlone {
  readonly tasksPerSecond: number;
  readonly cpuSecondsPer1000: number;
}

/** One worker process drains `count` preloaded tasks; timed from ready to the last settled. */
export async function workerAlone(broker: Broker, maxMessages: number, count: number): Promise<WorkerAlone> {
  const service = `Alone${maxMessages}`;
  await loadTasks(broker, service, count);
  const { child, metricsUrl } = await startWorker(await writeConfig(broker, service, maxMessages));
  try {
    const started = performance.now();
    const cpuBefore = await cpuSeconds(child.pid!);
    // A benchmark may poll: it reads the worker's own counter until every task is settled.
    while ((await succeeded(metricsUrl)) < count) await new Promise((resolve) => setTimeout(resolve, 50));
    const seconds = (performance.now() - started) / 1000;
    const cpu = (await cpuSeconds(child.pid!)) - cpuBefore;
    return { tasksPerSecond: count / seconds, cpuSecondsPer1000: (1000 * cpu) / count };
  } finally {
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('close', resolve));
  }
}

/** The Java client's batchReceive (100 a batch, one ack call each) draining `count` preloaded tasks. */
export async function javaDrain(broker: Broker, classpath: string, count: number): Promise<number> {
  const service = 'JavaDrain';
  await loadTasks(broker, service, count, 'java-drain');
  const { stdout } = await run(
    'java',
    [
      '-cp',
      classpath,
      'Interop',
      'drain',
      `url=${broker.url}`,
      `topic=persistent://public/${broker.namespace}/${taskTopic(service)}`,
      'subscription=java-drain',
      `count=${count}`,
    ],
    { timeout: 600_000, maxBuffer: 16 * 1024 * 1024 },
  );
  const line = stdout.split('\n').find((l) => l.startsWith('{"count"'));
  if (!line) throw new Error(`the Java drain printed no result:\n${stdout.slice(-2000)}`);
  const { count: got, seconds } = JSON.parse(line) as { count: number; seconds: number };
  return got / seconds;
}

/** One client process: fire-and-forget dispatch rate, or awaited end to end against a worker process. */
export async function clientProcess(
  broker: Broker,
  service: string,
  mode: 'dispatch' | 'e2e',
  count: number,
): Promise<{ tasksPerSecond: number; p50Ms: number; p99Ms: number }> {
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', `${root}bench/client-process.ts`, broker.url, broker.namespace, service, mode, String(count)],
    {
      timeout: 600_000,
      cwd: root,
    },
  );
  return JSON.parse(stdout.trim().split('\n').pop()!) as { tasksPerSecond: number; p50Ms: number; p99Ms: number };
}

/**
 * A client's result intake: `count` results preloaded on a client's result
 * topic in result batches of 100 (what a worker at maxMessages 100 sends),
 * then drained by one process with the client's own loop (receiveMany,
 * decodeResults, ackAll).
 */
export async function resultReceive(broker: Broker, count: number): Promise<number> {
  const topic = resultTopic('bench-receiver');
  const transport = new PulsarTransport({ brokerServiceUrl: broker.url, namespace: broker.namespace, logger: pino({ level: 'warn' }) });
  try {
    await transport.ensureSubscription(topic, CLIENT_SUBSCRIPTION);
    const producer = await transport.createProducer(topic);
    const sends: Promise<string>[] = [];
    for (let i = 0; i < count; i += 100) {
      const results: ResultEnvelope[] = [];
      for (let k = i; k < Math.min(count, i + 100); k++) {
        results.push({
          v: 1,
          kind: 'result',
          taskId: `t-${k}`,
          service: 'Bench',
          method: 'run',
          outcome: 'succeeded',
          value: k,
          attempts: 1,
        });
      }
      sends.push(producer.send({ payload: encodeEnvelope({ v: 1, kind: 'resultBatch', results }) }));
    }
    await Promise.all(sends);
    await producer.close();
  } finally {
    await transport.close();
  }
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', `${root}bench/client-process.ts`, broker.url, broker.namespace, topic, 'receive', String(count)],
    { timeout: 600_000, cwd: root },
  );
  return (JSON.parse(stdout.trim().split('\n').pop()!) as { tasksPerSecond: number }).tasksPerSecond;
}

/** Client and worker in processes of their own, maxMessages 100. */
export async function acrossProcesses(broker: Broker, count: number): Promise<{ tasksPerSecond: number; p50Ms: number; p99Ms: number }> {
  const service = 'AcrossProcesses';
  const { child } = await startWorker(await writeConfig(broker, service, 100));
  try {
    await clientProcess(broker, service, 'e2e', Math.min(2000, count)); // warm-up
    return await clientProcess(broker, service, 'e2e', count);
  } finally {
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('close', resolve));
  }
}

/** Builds the Java interop program and returns its classpath (the distribution's lib/ and its classes). */
export async function javaClasspath(pulsarHome: string): Promise<string> {
  const out = await mkdtemp(join(tmpdir(), 'sheaf-java-'));
  await run('javac', ['-d', out, '-cp', `${pulsarHome}/lib/*`, `${root}test/interop/java/Interop.java`], { timeout: 120_000 });
  return `${out}:${pulsarHome}/lib/*`;
}
