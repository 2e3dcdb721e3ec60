/**
 * `sheaf job run|status|watch`: a job from an NDJSON file with progress, its
 * final status on stdout, bad input lines named; on Pulsar, followed from
 * another process.
 */
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { freshNamespace, noPulsar, pulsarUrl } from '../support/pulsar.js';
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
      const watched = await runCli(['job', 'watch', '-c', config, jobId, '--timeout', '20']);
      expect(watched.code).toBe(0);
      expect(jsonLines(watched.stdout).at(-1)).toMatchObject({ jobId, succeeded: 500 });
    } finally {
      worker.child.kill('SIGTERM');
      expect(await worker.exited).toBe(0);
    }
  });
});
