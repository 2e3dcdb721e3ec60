/**
 * `sheaf job run|status|watch`: a job from an NDJSON file with progress, its
 * final status on stdout, bad input lines named; on Pulsar, followed from
 * another process.
 */
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describe, expect, test } from 'vitest';
import 'reflect-metadata';
import { Batch } from '../../src/service/decorators.js';
import { SheafWorker } from '../../src/worker/worker.js';
import { testLogger } from '../support/logger.js';
import { freshNamespace, noPulsar, pulsarTransport, pulsarUrl } from '../support/pulsar.js';
import { runCli, startCli, writeEchoConfig } from '../support/cli.js';

/** Writes `lines` as an NDJSON file beside the config; returns its path. */
async function ndjson(config: string, lines: string[]): Promise<string> {
  const file = join(dirname(config), 'items.ndjson');
  await writeFile(file, `${lines.join('\n')}\n`);
  return file;
}

/** `sheaf job run` of the Echo service's echo method over `input`, with `extra` arguments. */
const jobRun = (config: string, input: string, ...extra: string[]) =>
  runCli(['job', 'run', '-c', config, '--service', 'Echo', '--method', 'echo', '--input', input, ...extra]);

const jsonLines = (stdout: string): Array<Record<string, unknown>> =>
  stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('sheaf job (in memory)', () => {
  test('run: one task per line, the job id first and the final status last; a failed task makes exit 1', async () => {
    const config = await writeEchoConfig({ transport: 'inMemory' });
    const items = [...Array(300).keys()].map((i) => JSON.stringify(i === 150 ? 'fail' : `row-${i}`));
    const input = await ndjson(config, [...items.slice(0, 100), '', ...items.slice(100)]);
    const r = await jobRun(config, input, '--name', 'rows');
    const [first, last] = [jsonLines(r.stdout)[0]!, jsonLines(r.stdout).at(-1)!];
    expect(first.jobId).toMatch(/^job-/);
    expect(last).toMatchObject({ jobId: first.jobId, name: 'rows', total: 300, succeeded: 299, failed: 1, pending: 0, percent: 100 });
    expect(r.stderr).toMatch(/dispatched .* 300\/300/);
    expect(r.stderr).toMatch(/settled .* 300\/300/);
    expect(r.code).toBe(1);
  });

  test('a line that is not JSON, or lacks the batch key field, is named with its line number: exit 2', async () => {
    const config = await writeEchoConfig({ transport: 'inMemory' });
    const input = await ndjson(config, ['{"tenant":"a"}', '{"tenant":"b"}', '{oops']);
    const notJson = await jobRun(config, input);
    expect(notJson.code).toBe(2);
    expect(notJson.stderr).toMatch(/items\.ndjson:3: not JSON .*each line is one JSON value/);
    const noKey = await ndjson(config, ['{"tenant":"a"}', '{"other":1}']);
    const missing = await jobRun(config, noKey, '--batch-key-field', 'tenant');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/items\.ndjson:2: has no string or number field "tenant"/);
    const nowhere = await jobRun(config, '/nonexistent.ndjson');
    expect(nowhere.code).toBe(2);
    expect(nowhere.stderr).toMatch(/--input: \/nonexistent\.ndjson cannot be read/);
  });
});

describe('the README jobs example', () => {
  test('runs as the README says: 200 rows as one job, four refused, the final status last, exit 1', async () => {
    const example = new URL('../../examples/jobs/', import.meta.url).pathname;
    const r = await runCli([
      'job',
      'run',
      '-c',
      `${example}sheaf.yml`,
      '--service',
      'Rows',
      '--method',
      'insert',
      '--input',
      `${example}rows.ndjson`,
      '--batch-key-field',
      'tenant',
    ]);
    expect(jsonLines(r.stdout).at(-1)).toMatchObject({ total: 200, succeeded: 196, failed: 4, pending: 0, percent: 100 });
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(/"level":(40|50)/); // no warning in the example's own run
  });
});

describe.skipIf(noPulsar())('sheaf job (pulsar)', () => {
  test('run against workers elsewhere; status and watch from other processes', async () => {
    const namespace = await freshNamespace();
    const config = await writeEchoConfig({ transport: 'pulsar', pulsar: { brokerServiceUrl: pulsarUrl(), namespace } });
    const worker = startCli(['worker', '-c', config]);
    await worker.waitFor(/worker ready/);
    try {
      const input = await ndjson(
        config,
        [...Array(500).keys()].map((i) => JSON.stringify({ tenant: `t${i % 5}`, row: i })),
      );
      const r = await jobRun(config, input, '--batch-key-field', 'tenant');
      expect(r.code).toBe(0);
      const lines = jsonLines(r.stdout);
      const jobId = lines[0]!.jobId as string;
      expect(lines.at(-1)).toMatchObject({ jobId, total: 500, succeeded: 500, pending: 0 });
      const status = await runCli(['job', 'status', '-c', config, jobId]);
      expect(status.code).toBe(0);
      expect(jsonLines(status.stdout)[0]).toMatchObject({ jobId, total: 500, succeeded: 500 });
      const listed = await runCli(['job', 'list', '-c', config]);
      expect(listed.code).toBe(0);
      expect(listed.stdout).toMatch(new RegExp(`${jobId}\\s+finished\\s+500\\s+500\\s+0\\s+0\\s+100%`));
      const listedJson = await runCli(['job', 'list', '-c', config, '--json', '--limit', '5']);
      expect(jsonLines(listedJson.stdout).find((s) => s.jobId === jobId)).toMatchObject({ total: 500, succeeded: 500 });
      const watched = await runCli(['job', 'watch', '-c', config, jobId, '--timeout', '20']);
      expect(watched.code).toBe(0);
      expect(jsonLines(watched.stdout).at(-1)).toMatchObject({ jobId, succeeded: 500 });
    } finally {
      worker.child.kill('SIGTERM');
      expect(await worker.exited).toBe(0);
    }
  });

  test('the dispatcher killed -9 at random points and resumed each time: every line runs exactly once, the job finishes whole', async () => {
    const transport = await pulsarTransport();
    const runs = new Map<number, number>();
    const progressed = new Set<() => void>();
    class CountingEcho {
      echo(_value: number): void {}
      @Batch('echo')
      async echoMany(tasks: Map<string, number>): Promise<void> {
        for (const value of tasks.values()) runs.set(value, (runs.get(value) ?? 0) + 1);
        progressed.forEach((check) => check());
      }
    }
    // The workers run here, to count every execution; the dispatcher is the sheaf process that is killed.
    const worker = new SheafWorker({
      transport,
      logger: testLogger,
      services: [{ name: 'Echo', executor: { factory: () => new CountingEcho(), batch: { maxMessages: 100, maxSeconds: 0.05 } } }],
    });
    await worker.start();
    const until = (executed: number): Promise<void> =>
      new Promise((resolve) => {
        const check = (): void => {
          if (runs.size < executed) return;
          progressed.delete(check);
          resolve();
        };
        progressed.add(check);
        check();
      });
    try {
      const config = await writeEchoConfig({
        transport: 'pulsar',
        pulsar: { brokerServiceUrl: pulsarUrl(), namespace: transport.namespace },
      });
      const items = 50_000;
      const input = await ndjson(
        config,
        [...Array(items).keys()].map((i) => JSON.stringify(i)),
      );
      // Three kill points, at random numbers of lines executed.
      const killAt = [...Array(3)].map(() => 2000 + Math.floor(Math.random() * (items - 10_000))).sort((a, b) => a - b);
      let jobId: string | undefined;
      let final: Record<string, unknown> | undefined;
      const resumedFrom: number[] = [];
      for (let attempt = 0; final === undefined; attempt++) {
        const args = ['job', 'run', '-c', config, '--service', 'Echo', '--method', 'echo', '--input', input, '--in-flight', '200'];
        const dispatcher = startCli(jobId === undefined ? args : [...args, '--resume', jobId]);
        await dispatcher.waitFor(/"jobId"/);
        jobId ??= jsonLines(dispatcher.stdout())[0]!.jobId as string;
        if (attempt > 0) {
          await dispatcher.waitFor(/resuming job \S+ after \d+ dispatched items/);
          resumedFrom.push(Number(/resuming job \S+ after (\d+) dispatched items/.exec(dispatcher.stderr())![1]));
        }
        const killPoint = killAt[attempt];
        if (killPoint === undefined) {
          expect(await dispatcher.exited).toBe(0);
          final = jsonLines(dispatcher.stdout()).at(-1);
          break;
        }
        await Promise.race([until(killPoint), dispatcher.exited]);
        dispatcher.child.kill('SIGKILL');
        await dispatcher.exited;
      }
      expect(final).toMatchObject({ jobId, total: items, succeeded: items, failed: 0, deadLettered: 0, pending: 0 });
      expect(runs.size).toBe(items);
      // Exactly once each: nothing dispatched twice across the kills (no worker fault here to repeat a task).
      expect([...runs.entries()].filter(([, n]) => n !== 1)).toEqual([]);
      // Each resume started from a later checkpoint.
      expect(resumedFrom).toEqual([...resumedFrom].sort((a, b) => a - b));
    } finally {
      await worker.close();
      await transport.close();
    }
  }, 180_000);
});
