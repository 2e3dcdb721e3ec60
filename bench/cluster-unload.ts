/**
 * Issue 16's unload run, with processes, on the local cluster of
 * scripts/pulsar-cluster.sh: two `sheaf worker` processes, a client here
 * with 2,000 tasks in flight, a task topic of 6 partitions, the namespace
 * unloaded every 5 s (UNLOAD_EVERY_SECONDS). Prints whether every task was
 * answered within 300 s, and how many ran twice. With KILL_BROKER=a or b,
 * that broker is killed -9 a third of the way instead of the unloads (and
 * started again at the end): the longest time without an answer is the
 * stall. With a broker kill the official Java client runs beside Sheaf on
 * the same cluster (bench/java/BrokerLossProbe.java, its own partitioned
 * topic, default settings), so both see the same loss; JAVA_PROBE=0 leaves
 * it out. Not a test: a measurement (docs/reliability.md). `npm run build`
 * first.
 *
 *   TOTAL=200000 npx tsx bench/cluster-unload.ts
 *   TOTAL=60000 KILL_BROKER=b npx tsx bench/cluster-unload.ts
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { SheafClient } from '../src/client/client.js';
import { PulsarTransport } from '../src/transport/pulsar/pulsar-transport.js';

const ADMIN = 'http://127.0.0.1:8180/admin/v2';
const SERVICE_URL = 'pulsar://127.0.0.1:6680,127.0.0.1:6681';
const total = Number(process.env.TOTAL ?? 50_000);
const unloadEveryMs = Number(process.env.UNLOAD_EVERY_SECONDS ?? 5) * 1000;
const killBroker = process.env.KILL_BROKER;
const cluster = new URL('../scripts/pulsar-cluster.sh', import.meta.url).pathname;
const WINDOW = 2000;
const LIMIT_MS = 300_000;

async function admin(method: 'PUT' | 'DELETE', path: string, body?: unknown): Promise<void> {
  const response = await fetch(`${ADMIN}/${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(30_000),
  });
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
}

const namespace = `unload-${randomUUID().slice(0, 8)}`;
await admin('PUT', `namespaces/public/${namespace}`);
await admin('PUT', `persistent/public/${namespace}/sheaf-tasks-Fault/partitions`, 6);
const dir = await mkdtemp(join(tmpdir(), 'sheaf-unload-'));
const execLog = join(dir, 'executions.log');
await writeFile(execLog, '');
const config = join(dir, 'sheaf.yml');
await writeFile(
  config,
  `name: unload-worker
transport: pulsar
pulsar: { brokerServiceUrl: '${SERVICE_URL}', namespace: ${namespace}, nackRedeliveryDelayMs: 200 }
logs: { level: warn, pretty: false }
services:
  - name: Fault
    executor:
      module: ${new URL('../test/faults/fixtures/fault-service.mjs', import.meta.url).pathname}
      export: FaultService
      concurrency: 4
      batch: { maxMessages: 100, maxSeconds: 0.2 }
`,
);
/** The Java probe, started on its own 6-partition topic; resolves to its JSON line once told to stop. */
async function startJavaProbe(): Promise<{ stop(): Promise<unknown> }> {
  const home = execFileSync(new URL('../scripts/pulsar.sh', import.meta.url).pathname, ['home'], { encoding: 'utf8' }).trim();
  const out = join(tmpdir(), 'sheaf-broker-loss-probe');
  mkdirSync(out, { recursive: true });
  execFileSync('javac', ['-d', out, '-cp', `${home}/lib/*`, new URL('./java/BrokerLossProbe.java', import.meta.url).pathname]);
  await admin('PUT', `persistent/public/${namespace}/java-probe/partitions`, 6);
  const stopFile = join(dir, 'stop-java-probe');
  const child: ChildProcess = spawn(
    'java',
    ['-cp', `${out}:${home}/lib/*`, 'BrokerLossProbe', SERVICE_URL, `persistent://public/${namespace}/java-probe`, `${WINDOW}`, stopFile],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  let line = '';
  let ready!: () => void;
  const started = new Promise<void>((resolve) => (ready = resolve));
  createInterface({ input: child.stdout! }).on('line', (text) => {
    if (text === 'READY') ready();
    else if (text.startsWith('{"sent"')) line = text;
  });
  const ended = new Promise<void>((resolve) => child.on('close', () => resolve()));
  await Promise.race([started, ended]);
  return {
    async stop() {
      await writeFile(stopFile, '');
      const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      await ended;
      clearTimeout(killer);
      return line ? (JSON.parse(line) as unknown) : 'no result (the probe failed or was killed)';
    },
  };
}
const javaProbe = killBroker && process.env.JAVA_PROBE !== '0' ? await startJavaProbe() : undefined;

const workers = [0, 1].map(() =>
  spawn(process.execPath, ['dist/cli/main.js', 'worker', '-c', config], {
    env: { ...process.env, FAULT_EXEC_LOG: execLog },
    stdio: ['ignore', 'ignore', 'inherit'],
  }),
);
const logger = pino({ level: 'warn' });
const transport = new PulsarTransport({ brokerServiceUrl: SERVICE_URL, namespace, logger });
const client = await SheafClient.connect({ transport, logger, maxUnackedResults: 5000 });
const stub = (i: number) => client.service<{ work(s: string): Promise<string> }>('Fault', { meta: { batchKey: `key-${i % 8}` } });

let done = 0;
let inFlight = 0;
let unloads = 0;
let wake: (() => void) | null = null;
let lastAnswerAt = Date.now();
let longestGapMs = 0;
let killedAt = 0;
const failed: string[] = [];
const started = Date.now();
const clusterCommand = (...args: string[]) =>
  new Promise<void>((resolve) => spawn('bash', [cluster, ...args], { stdio: 'inherit' }).on('close', () => resolve()));
const unloading = setInterval(() => {
  if (killBroker) return;
  void admin('PUT', `namespaces/public/${namespace}/unload`).then(
    () => (unloads += 1),
    () => undefined,
  );
}, unloadEveryMs);
const progress = setInterval(
  () => process.stderr.write(`${((Date.now() - started) / 1000).toFixed(0)} s: ${done} answered, ${unloads} unloads\n`),
  10_000,
);
const answers: Promise<unknown>[] = [];
for (let i = 0; i < total && Date.now() - started < LIMIT_MS; i++) {
  while (inFlight >= WINDOW) await new Promise<void>((resolve) => (wake = resolve));
  inFlight += 1;
  answers.push(
    stub(i)
      .work(`${i}`)
      .then(() => {
        const now = Date.now();
        longestGapMs = Math.max(longestGapMs, now - lastAnswerAt);
        lastAnswerAt = now;
        done += 1;
        if (killBroker && killedAt === 0 && done >= total / 3) {
          killedAt = now;
          void clusterCommand('kill-broker', killBroker);
        }
        inFlight -= 1;
        wake?.();
        wake = null;
      })
      .catch((error: unknown) => {
        // A dispatch that failed (a send the broker never confirmed): counted, not retried.
        failed.push((error as Error).name);
        inFlight -= 1;
        wake?.();
        wake = null;
      }),
  );
}
const finished = await Promise.race([
  Promise.all(answers).then(() => true),
  new Promise<boolean>((r) => setTimeout(() => r(false), LIMIT_MS)),
]);
const seconds = (Date.now() - started) / 1000;
clearInterval(unloading);
clearInterval(progress);
const javaClient = await javaProbe?.stop();
const runs = new Map<string, number>();
for (const line of (await readFile(execLog, 'utf8')).split('\n')) {
  const id = line.split(' ')[0];
  if (id) runs.set(id, (runs.get(id) ?? 0) + 1);
}
const twice = [...runs.values()].filter((n) => n > 1).length;
console.log(
  JSON.stringify({
    total,
    answered: done,
    failedDispatches: failed.length,
    failedAs: [...new Set(failed)],
    finished,
    seconds,
    ...(killBroker ? { killed: killBroker, longestStallSeconds: longestGapMs / 1000 } : { unloads }),
    ...(javaClient ? { javaClient } : {}),
    executedTwice: twice,
    executedTwiceRate: twice / total,
  }),
);
for (const worker of workers) worker.kill('SIGKILL');
await client.close().catch(() => undefined);
await transport.close().catch(() => undefined);
for (const partitioned of ['sheaf-tasks-Fault', ...(javaProbe ? ['java-probe'] : [])])
  await admin('DELETE', `persistent/public/${namespace}/${partitioned}/partitions?force=true`).catch(() => undefined);
// A default broker refuses to force-delete a namespace: its topics first.
const left = (await (await fetch(`${ADMIN}/namespaces/public/${namespace}/topics`)).json()) as string[];
for (const topic of left)
  await admin('DELETE', `persistent/public/${namespace}/${topic.split('/').pop()!}?force=true`).catch(() => undefined);
await admin('DELETE', `namespaces/public/${namespace}`).catch((error: unknown) =>
  console.error(`left namespace public/${namespace}: ${String(error)}`),
);
if (killBroker) await clusterCommand('start-broker', killBroker);
process.exit(finished && failed.length === 0 ? 0 : 1);
