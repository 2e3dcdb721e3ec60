/**
 * The broker's own ceiling: the distribution's `pulsar-perf produce` and
 * `consume` against the same broker, at the same payload sizes Sheaf's
 * client is measured with.
 */
import { execFile } from 'node:child_process';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export function pulsarHome(version: string): string {
  return join(process.env.SHEAF_PULSAR_HOME ?? join(homedir(), '.cache', 'sheaf'), `apache-pulsar-${version}`);
}

export interface PerfRates {
  readonly produce: number;
  readonly consume: number;
}

/**
 * The producer's rate, from the client's own stats line ("Publish throughput:
 * X msg/s", printed once at close with -i 60). pulsar-perf's final
 * "Aggregated" line for producers divides by the wall time including its
 * ~9 s shutdown, so it understates the rate badly.
 */
function publishRate(output: string): number {
  const rates = [...output.matchAll(/Publish throughput: ([\d.]+) msg\/s/g)].map((m) => Number(m[1]));
  if (rates.length === 0) throw new Error(`pulsar-perf printed no publish throughput:\n${output.slice(-2000)}`);
  return Math.max(...rates);
}

/** The consumer's rate, from its final "Aggregated throughput" line (subscribe to last message). */
function aggregatedRate(output: string): number {
  const match = /Aggregated throughput stats[^\n]*?([\d,.]+)\s*msg\/s/.exec(output);
  if (!match) throw new Error(`pulsar-perf printed no aggregated rate:\n${output.slice(-2000)}`);
  return Number(match[1]!.replace(/,/g, ''));
}

export async function pulsarPerf(
  version: string,
  serviceUrl: string,
  adminUrl: string,
  topic: string,
  size: number,
  messages: number,
): Promise<PerfRates> {
  const bin = join(pulsarHome(version), 'bin', 'pulsar-perf');
  const env = { ...process.env, PULSAR_MEM: '-Xms512m -Xmx512m', PULSAR_GC: '-XX:+UseG1GC -XX:ParallelGCThreads=2' };
  const options = { env, maxBuffer: 64 * 2 ** 20 };
  // The subscription exists first, so the messages wait for it; consuming then drains a backlog.
  const path = topic.replace('persistent://', '');
  const created = await fetch(`${adminUrl}/admin/v2/persistent/${path}/subscription/perf`, { method: 'PUT' });
  if (!created.ok) throw new Error(`creating the subscription failed: ${created.status} ${await created.text()}`);
  const produced = await run(
    bin,
    ['produce', '-u', serviceUrl, '-m', String(messages), '-r', '10000000', '-s', String(size), '-i', '60', topic],
    options,
  );
  const consumed = await run(bin, ['consume', '-u', serviceUrl, '-m', String(messages), '-ss', 'perf', '-i', '60', topic], options);
  return { produce: publishRate(produced.stdout + produced.stderr), consume: aggregatedRate(consumed.stdout + consumed.stderr) };
}
