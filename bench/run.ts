/**
 * `npm run bench`: how close Sheaf gets to what the broker itself can do, and
 * how much batching buys, measured in one run and printed as one table.
 * Writes bench/results/latest.md (with the machine), results.json and
 * throughput.png. Targets are reported, never asserted.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { InMemoryTransport } from '../src/transport/memory/in-memory-transport.js';
import { PulsarTransport } from '../src/transport/pulsar/pulsar-transport.js';
import { pino } from 'pino';
import { pulsarHome, pulsarPerf } from './broker-ceiling.js';
import { sheafClientRates } from './client-rates.js';
import { deadLetterRate, endToEnd, endToEndInJob, lowLoadLatency, memoryPerTask, sinkThroughput } from './end-to-end.js';
import { manySmallJobs, processAsker } from './jobs.js';
import { enableTelemetry } from './telemetry.js';
import { acrossProcesses, clientProcess, javaClasspath, javaDrain, resultReceive, workerAlone, type WorkerAlone } from './processes.js';
import { describeMachine } from './machine.js';
import { drawChart, markdownTable, textTable, type Row } from './report.js';

const run = promisify(execFile);
const root = new URL('..', import.meta.url).pathname;
const resultsDir = new URL('./results/', import.meta.url).pathname;
const quick = process.env.BENCH_SCALE === 'quick';
const n = (full: number, short: number): number => (quick ? short : full);
const step = (what: string): void => void process.stderr.write(`bench: ${what}\n`);
const fmt = (x: number): string => (x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(1));
const pct = (x: number): string => `${(100 * x).toFixed(0)} %`;
const verdict = (ok: boolean): string => (ok ? 'met' : 'missed');

/** True when this run started the broker: it stops it again at the end (SHEAF_KEEP_PULSAR=1 keeps it). */
let startedBroker = false;

async function broker(): Promise<{ url: string; adminUrl: string; version: string }> {
  const script = await readFile(`${root}scripts/pulsar.sh`, 'utf8');
  const version = /PULSAR_VERSION="\$\{PULSAR_VERSION:-([^}]+)\}"/.exec(script)![1]!;
  if (process.env.PULSAR_URL) {
    const host = new URL(process.env.PULSAR_URL.replace(/^pulsar:/, 'http:')).hostname;
    return { url: process.env.PULSAR_URL, adminUrl: process.env.PULSAR_ADMIN_URL ?? `http://${host}:8080`, version };
  }
  startedBroker = !(await run('bash', [`${root}scripts/pulsar.sh`, 'status']).then(
    () => true,
    () => false,
  ));
  if (startedBroker) step('starting the broker with scripts/pulsar.sh');
  await run('bash', [`${root}scripts/pulsar.sh`, 'start']);
  return { url: 'pulsar://127.0.0.1:6650', adminUrl: 'http://127.0.0.1:8080', version };
}

const { url, adminUrl, version } = await broker();
// The process benchmarks run `sheaf worker` from dist/.
step('building dist/');
await run('npm', ['run', '--silent', 'build'], { cwd: root });
const namespace = `bench-${randomUUID().slice(0, 8)}`;
const created = await fetch(`${adminUrl}/admin/v2/namespaces/public/${namespace}`, { method: 'PUT' });
if (!created.ok) throw new Error(`cannot create namespace public/${namespace}: ${created.status}`);
const pulsar = () => new PulsarTransport({ brokerServiceUrl: url, namespace, logger: pino({ level: 'warn' }) });
const memory = () => new InMemoryTransport();

const rows: Row[] = [];
const results: Record<string, unknown> = {
  machine: describeMachine(version),
  scale: quick ? 'quick' : 'full',
  date: new Date().toISOString(),
};

// 1 and 2: the broker's ceiling, and Sheaf's client against it.
for (const size of [100, 1024]) {
  const messages = n(size === 100 ? 300_000 : 200_000, 20_000);
  step(`pulsar-perf, ${size} B × ${messages}`);
  const perf = await pulsarPerf(version, url, adminUrl, `persistent://public/${namespace}/perf-${size}`, size, messages);
  step(`Sheaf client, ${size} B × ${messages}, batching on and off`);
  const batched = await sheafClientRates(url, namespace, `sheaf-batched-${size}`, size, messages, true);
  const single = await sheafClientRates(url, namespace, `sheaf-single-${size}`, size, Math.min(messages, n(50_000, 10_000)), false);
  results[`client-${size}`] = { pulsarPerf: perf, sheafBatched: batched, sheafUnbatched: single };
  rows.push(
    { measure: `pulsar-perf produce, ${size} B (msg/s)`, value: fmt(perf.produce), target: 'ceiling', verdict: '' },
    { measure: `pulsar-perf consume, ${size} B (msg/s)`, value: fmt(perf.consume), target: 'ceiling', verdict: '' },
    {
      measure: `Sheaf client produce, ${size} B, batching (msg/s)`,
      value: `${fmt(batched.produce)} (${pct(batched.produce / perf.produce)})`,
      target: '≥ 80 % of pulsar-perf',
      verdict: verdict(batched.produce >= 0.8 * perf.produce),
    },
    {
      measure: `Sheaf client consume, ${size} B (msg/s)`,
      value: `${fmt(batched.consume)} (${pct(batched.consume / perf.consume)})`,
      target: '≥ 80 % of pulsar-perf',
      verdict: verdict(batched.consume >= 0.8 * perf.consume),
    },
    { measure: `Sheaf client produce, ${size} B, one message per send (msg/s)`, value: fmt(single.produce), target: '', verdict: '' },
  );
}
const perfProduce100 = (results['client-100'] as { pulsarPerf: { produce: number } }).pulsarPerf.produce;

// 3: end to end, by batch size, on both transports.
const chart: Array<{ transport: string; maxMessages: number; tasksPerSecond: number }> = [];
for (const maxMessages of [1, 10, 100, 1000]) {
  for (const [name, transport, total] of [
    ['inMemory', memory, n(maxMessages === 1 ? 50_000 : 300_000, 20_000)],
    ['pulsar', pulsar, n(maxMessages === 1 ? 10_000 : 60_000, 5_000)],
  ] as const) {
    step(`end to end, ${name}, maxMessages ${maxMessages}, ${total} tasks`);
    const e = await endToEnd(transport(), maxMessages, total);
    chart.push({ transport: name, maxMessages, tasksPerSecond: e.tasksPerSecond });
    results[`e2e-${name}-${maxMessages}`] = e;
    const target =
      name === 'inMemory' && maxMessages === 100
        ? { text: '≥ 150,000 tasks/s', ok: e.tasksPerSecond >= 150_000 }
        : name === 'pulsar' && maxMessages === 100
          ? { text: `≥ 35 % of pulsar-perf produce (${fmt(0.35 * perfProduce100)})`, ok: e.tasksPerSecond >= 0.35 * perfProduce100 }
          : { text: '', ok: true };
    rows.push({
      measure: `end to end, ${name}, maxMessages ${maxMessages} (tasks/s; p50 / p99 at saturation)`,
      value: `${fmt(e.tasksPerSecond)} (${fmt(e.saturatedP50Ms)} / ${fmt(e.saturatedP99Ms)} ms)`,
      target: target.text,
      verdict: target.text ? verdict(target.ok) : '',
    });
  }
}
{
  // maxMessages 100 again, with producer batching off for every producer of the run (client and worker):
  // what batching on by default buys.
  const total = n(60_000, 5_000);
  step(`end to end, pulsar without producer batching, maxMessages 100, ${total} tasks`);
  const unbatchedPulsar = () =>
    new PulsarTransport({ brokerServiceUrl: url, namespace, logger: pino({ level: 'warn' }), producer: { batchingMaxMessages: 1 } });
  const e = await endToEnd(unbatchedPulsar(), 100, total);
  results['e2e-pulsar-unbatched-100'] = e;
  rows.push({
    measure: 'end to end, pulsar, producer batching off, maxMessages 100 (tasks/s; p50 / p99 at saturation)',
    value: `${fmt(e.tasksPerSecond)} (${fmt(e.saturatedP50Ms)} / ${fmt(e.saturatedP99Ms)} ms)`,
    target: '',
    verdict: '',
  });
}
// 3b: what a job costs (issue 17): the same tasks end to end with and without a job, alternated, best of 2.
for (const [name, transport, total] of [
  ['inMemory', memory, n(300_000, 20_000)],
  ['pulsar', pulsar, n(60_000, 5_000)],
] as const) {
  step(`end to end with and without a job, ${name}, maxMessages 100, ${total} tasks, twice each`);
  let plain = 0;
  let inJob = 0;
  let toDone = Infinity;
  for (let round = 0; round < 2; round++) {
    plain = Math.max(plain, (await endToEnd(transport(), 100, total, true)).tasksPerSecond);
    const j = await endToEndInJob(transport(), 100, total);
    inJob = Math.max(inJob, j.tasksPerSecond);
    toDone = Math.min(toDone, j.secondsToDone);
  }
  const slower = 1 - inJob / plain;
  results[`e2e-job-${name}-100`] = { plain, inJob, slower, secondsToDone: toDone };
  rows.push({
    measure: `end to end in a job vs not, ${name}, maxMessages 100 (tasks/s; seal to done)`,
    value: `${fmt(inJob)} vs ${fmt(plain)} (${(slower * 100).toFixed(1)} % slower; ${toDone.toFixed(1)} s)`,
    target: '≤ 15 % slower',
    verdict: verdict(slower <= 0.15),
  });
}
// 3c: many small jobs at once (issue 17): each finishes and calls back once; a status is answered quickly meanwhile.
for (const [name, transport] of [
  ['inMemory', memory],
  ['pulsar', pulsar],
] as const) {
  const jobs = n(10_000, 500);
  step(`${jobs} concurrent jobs of 10 tasks, ${name}`);
  // On Pulsar the statuses are asked from a process of their own, as a dashboard or `sheaf job status` would.
  const m = await manySmallJobs(transport(), jobs, 10, name === 'pulsar' ? processAsker({ url, namespace }) : undefined);
  results[`many-jobs-${name}`] = m;
  rows.push({
    measure: `${fmt(jobs)} concurrent jobs of 10 tasks, ${name}: called back (extra); all done in; attach and status of a job p50 / p99 / max (the asker's first, loading its table)`,
    value: `${fmt(m.calledBack)} (${m.extraCallbacks}); ${m.seconds.toFixed(1)} s; ${m.statusP50Ms.toFixed(2)} / ${m.statusP99Ms.toFixed(2)} / ${m.statusMaxMs.toFixed(2)} ms (${m.firstStatusMs.toFixed(0)} ms)`,
    target: 'every job once; status < 50 ms',
    verdict: verdict(m.calledBack === jobs && m.statusMaxMs < 50),
  });
}
// 3a: process by process, as users deploy it (issue 12's measurements): a worker process alone draining
// preloaded tasks, the Java client's batchReceive draining the same, one client process, and client and
// worker in processes of their own.
{
  const consume100 = (results['client-100'] as { sheafBatched: { consume: number } }).sheafBatched.consume;
  const brokerRef = { url, namespace };
  const alone: Record<number, WorkerAlone> = {};
  for (const maxMessages of [1, 100, 1000]) {
    const count = n(maxMessages === 1 ? 20_000 : 60_000, 5_000);
    step(`worker alone, pulsar, maxMessages ${maxMessages}, ${count} preloaded tasks`);
    const w = await workerAlone(brokerRef, maxMessages, count);
    alone[maxMessages] = w;
    results[`worker-alone-${maxMessages}`] = w;
    const target =
      maxMessages === 100
        ? {
            text: `≥ 100,000 tasks/s or ≥ 40 % of the client's consume (${fmt(0.4 * consume100)})`,
            ok: w.tasksPerSecond >= 100_000 || w.tasksPerSecond >= 0.4 * consume100,
          }
        : null;
    rows.push({
      measure: `worker alone, pulsar, maxMessages ${maxMessages} (tasks/s)`,
      value: `${fmt(w.tasksPerSecond)} (${w.cpuSecondsPer1000.toFixed(3)} CPU s per 1,000 tasks)`,
      target: target?.text ?? '',
      verdict: target ? verdict(target.ok) : '',
    });
  }
  const drainCount = n(60_000, 5_000);
  step(`Java client batchReceive drain, ${drainCount} preloaded tasks`);
  const java = await javaDrain(brokerRef, await javaClasspath(pulsarHome(version)), drainCount);
  results.javaBatchReceiveDrain = java;
  const ratio = alone[100]!.tasksPerSecond / java;
  rows.push({ measure: 'Java client batchReceive drain, maxMessages 100 (tasks/s)', value: fmt(java), target: 'peer', verdict: '' });
  rows.push({
    measure: 'worker alone against the Java batchReceive drain, maxMessages 100 (ratio)',
    value: `${ratio.toFixed(2)} ×`,
    target: '≥ 0.7 ×',
    verdict: verdict(ratio >= 0.7),
  });
  const dispatchCount = n(60_000, 5_000);
  step(`client alone, fire-and-forget dispatch, ${dispatchCount} tasks`);
  const dispatch = await clientProcess(brokerRef, 'NobodyServes', 'dispatch', dispatchCount);
  results.clientAloneDispatch = dispatch.tasksPerSecond;
  rows.push({
    measure: 'client alone, pulsar, fire-and-forget dispatch (tasks/s)',
    value: fmt(dispatch.tasksPerSecond),
    target: '',
    verdict: '',
  });
  const receiveCount = n(200_000, 10_000);
  step(`client alone, result receive, ${receiveCount} preloaded results in batches of 100`);
  const received = await resultReceive(brokerRef, receiveCount);
  results.clientAloneResultReceive = received;
  rows.push({
    measure: 'client alone, pulsar, result receive, batches of 100 (results/s)',
    value: fmt(received),
    target: '',
    verdict: '',
  });
  const acrossCount = n(60_000, 5_000);
  step(`end to end across processes, pulsar, maxMessages 100, ${acrossCount} tasks`);
  const across = await acrossProcesses(brokerRef, acrossCount);
  results.acrossProcesses = across;
  rows.push({
    measure: 'end to end across processes, pulsar, maxMessages 100 (tasks/s; p50 / p99)',
    value: `${fmt(across.tasksPerSecond)} (${fmt(across.p50Ms)} / ${fmt(across.p99Ms)} ms)`,
    target: `≥ 25 % of pulsar-perf produce (${fmt(0.25 * perfProduce100)})`,
    verdict: verdict(across.tasksPerSecond >= 0.25 * perfProduce100),
  });
}

// 3b: the cost of telemetry: OpenTelemetry SDKs registered (tracing and metrics recording, no exporter
// attached) against none, at maxMessages 100, runs alternated and the best of two kept for each.
for (const [name, transport, total] of [
  ['inMemory', memory, n(300_000, 20_000)],
  ['pulsar', pulsar, n(60_000, 5_000)],
] as const) {
  const best = { off: 0, on: 0 };
  for (const mode of ['off', 'on', 'off', 'on'] as const) {
    step(`end to end, ${name}, maxMessages 100, telemetry ${mode}, ${total} tasks`);
    const telemetry = mode === 'on' ? enableTelemetry() : null;
    try {
      best[mode] = Math.max(best[mode], (await endToEnd(transport(), 100, total)).tasksPerSecond);
    } finally {
      await telemetry?.disable();
    }
  }
  const ratio = best.on / best.off;
  results[`telemetry-${name}`] = { ...best, ratio };
  rows.push({
    measure: `end to end, ${name}, maxMessages 100, tracing and metrics on, no exporter (tasks/s; % of off)`,
    value: `${fmt(best.on)} (${(100 * ratio).toFixed(1)} % of ${fmt(best.off)})`,
    target: '≥ 95 % of telemetry off',
    verdict: verdict(ratio >= 0.95),
  });
}

for (const [name, transport] of [
  ['inMemory', memory],
  ['pulsar', pulsar],
] as const) {
  step(`low-load latency, ${name}`);
  const l = await lowLoadLatency(transport(), 0.05, n(200, 40));
  results[`latency-${name}`] = l;
  rows.push({
    measure: `latency at low load, ${name}, maxSeconds 0.05 (p50 / p99)`,
    value: `${fmt(l.p50Ms)} / ${fmt(l.p99Ms)} ms`,
    target: 'p50 ≤ maxSeconds + 10 ms (60 ms)',
    verdict: verdict(l.p50Ms <= 60),
  });
}

// 4: what batching buys against a sink with a fixed cost per call.
step('batching benefit, 5 ms sink');
const unbatched = await sinkThroughput(memory(), 1, n(1_000, 300));
rows.push({ measure: 'sink at 5 ms per call, unbatched (tasks/s)', value: fmt(unbatched), target: '', verdict: '' });
for (const maxMessages of [10, 100]) {
  const batched = await sinkThroughput(memory(), maxMessages, n(maxMessages * 500, maxMessages * 100));
  const benefit = batched / unbatched;
  results[`sink-${maxMessages}`] = { unbatched, batched, benefit };
  rows.push({
    measure: `sink at 5 ms per call, maxMessages ${maxMessages} (tasks/s; × unbatched)`,
    value: `${fmt(batched)} (× ${benefit.toFixed(1)})`,
    target: `≥ × ${(0.8 * maxMessages).toFixed(0)}`,
    verdict: verdict(benefit >= 0.8 * maxMessages),
  });
}

// 5: memory per task in flight.
step('memory per in-flight task');
const perTask = await memoryPerTask(memory(), n(20_000, 5_000));
results.memoryPerTaskBytes = perTask;
rows.push({
  measure: 'heap per in-flight task, inMemory (client + transport + worker)',
  value: `${fmt(perTask)} B`,
  target: '≤ 2,560 B (2.5 KB)',
  verdict: verdict(perTask <= 2560),
});

// 6: tasks that fail for good, each a dead letter through a producer named after its attempt; last, because it turns
// the namespace's deduplication on (as `sheaf setup` does), which the rows above ran without.
await fetch(`${adminUrl}/admin/v2/namespaces/public/${namespace}/deduplication`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: 'true',
});
for (const [name, transport, total] of [
  ['inMemory', memory, n(20_000, 2_000)],
  ['pulsar', pulsar, n(5_000, 1_000)],
] as const) {
  step(`dead letters, ${name}, ${total} tasks failing for good`);
  const d = await deadLetterRate(transport(), total);
  results[`dead-letters-${name}`] = d;
  rows.push({
    measure: `tasks failing for good, ${name}, maxMessages 100 (dead letters/s; p50 / p99 at saturation)`,
    value: `${fmt(d.tasksPerSecond)} (${fmt(d.saturatedP50Ms)} / ${fmt(d.saturatedP99Ms)} ms)`,
    target: '',
    verdict: '',
  });
}

// Report.
await mkdir(resultsDir, { recursive: true });
await drawChart(chart, `${resultsDir}throughput.png`);
const machine = Object.entries(results.machine as Record<string, string>)
  .map(([k, v]) => `- ${k}: ${v}`)
  .join('\n');
const markdown = `# Sheaf benchmarks (${quick ? 'quick' : 'full'} run, ${new Date().toISOString().slice(0, 10)})

${machine}

${markdownTable(rows)}

![throughput against maxMessages](throughput.png)

Produced by \`npm run bench\`${quick ? ' with BENCH_SCALE=quick' : ''}; raw figures in results.json.
`;
await writeFile(`${resultsDir}latest.md`, markdown);
await writeFile(`${resultsDir}results.json`, `${JSON.stringify({ ...results, rows }, null, 2)}\n`);
process.stdout.write(`\n${textTable(rows)}\n\nwritten: bench/results/latest.md, results.json, throughput.png\n`);
// Nothing of the run stays on the broker: its topics, then its namespace (a broker refuses to delete a namespace with topics).
step(`deleting namespace public/${namespace}`);
const nsBase = `${adminUrl}/admin/v2/persistent/public/${namespace}`;
for (const topic of (await (await fetch(`${nsBase}/partitioned`)).json()) as string[]) {
  await fetch(`${nsBase}/${topic.split('/').pop()!}/partitions?force=true`, { method: 'DELETE' });
}
for (const topic of (await (await fetch(nsBase)).json()) as string[]) {
  await fetch(`${nsBase}/${topic.split('/').pop()!}?force=true`, { method: 'DELETE' });
}
const deleted = await fetch(`${adminUrl}/admin/v2/namespaces/public/${namespace}`, { method: 'DELETE' });
if (!deleted.ok) step(`could not delete namespace public/${namespace} (${deleted.status}); delete it by hand`);
if (startedBroker && process.env.SHEAF_KEEP_PULSAR !== '1') {
  step('stopping the broker it started');
  await run('bash', [`${root}scripts/pulsar.sh`, 'stop']);
}
process.exit(0);
