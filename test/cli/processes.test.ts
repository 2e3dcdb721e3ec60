/**
 * `sheaf worker --processes N`: N worker processes under one supervisor that
 * share the tasks, drain together on a signal, and fail together.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { inject } from 'vitest';
import { freshNamespace, noPulsar, pulsarUrl } from '../support/pulsar.js';
import { runCli, startCli, writeEchoConfig } from '../support/cli.js';

/** `sheaf_tasks_succeeded_total` of one worker process. */
async function succeeded(metricsUrl: string): Promise<number> {
  const text = await (await fetch(`${metricsUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('sheaf_tasks_succeeded_total{'));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

describe('sheaf worker --processes', () => {
  test('with the in-memory transport: a configuration error naming processes and the fix', async () => {
    const config = await writeEchoConfig({ transport: 'inMemory' });
    const r = await runCli(['worker', '-c', config, '--processes', '2']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/processes: is 2, but the in-memory transport reaches only its own process: use transport: pulsar/);
  });

  test('a bad count is refused before anything starts', async () => {
    const config = await writeEchoConfig({ transport: 'inMemory' });
    const r = await runCli(['worker', '-c', config, '--processes', '0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/'0' is not a number of processes \(1-64\)/);
  });
});

describe.skipIf(noPulsar())('sheaf worker --processes (pulsar)', () => {
  async function config(namespace: string): Promise<string> {
    return writeEchoConfig({
      transport: 'pulsar',
      pulsar: { brokerServiceUrl: pulsarUrl(), namespace, connectThroughServiceUrl: inject('pulsarThroughServiceUrl') },
      // A small window per process, so that neither can take every task.
      executor: 'maxUnacked: 50\n      batch: { maxMessages: 10, maxSeconds: 0.05 }',
    });
  }

  test('two processes share the tasks; SIGTERM drains both and exits 0', async () => {
    const file = await config(await freshNamespace());
    const supervisor = startCli(['worker', '-c', file, '--processes', '2', '--metrics-port', '0']);
    try {
      await supervisor.waitFor(/supervising 2 worker processes/);
      await supervisor.waitFor(/"msg":"worker ready"[\s\S]*"msg":"worker ready"/);
      const urls = [...supervisor.stderr().matchAll(/metrics and health on (http:\/\/[\d.]+:\d+)/g)].map((m) => m[1]!);
      expect(urls).toHaveLength(2);
      const keys = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
      const runs = await Promise.all(
        keys.map((key) =>
          runCli([
            'dispatch',
            '-c',
            file,
            'Echo.echo',
            '--args',
            '["hi"]',
            '--batch-key',
            key,
            '--count',
            '50',
            '--wait',
            '--timeout',
            '60',
          ]),
        ),
      );
      expect(runs.map((r) => r.code)).toEqual(keys.map(() => 0));
      const counts = await Promise.all(urls.map(succeeded));
      expect(counts[0]! + counts[1]!).toBe(400);
      expect(counts.every((n) => n > 0)).toBe(true);
      supervisor.child.kill('SIGTERM');
      expect(await supervisor.exited).toBe(0);
      expect(supervisor.stderr()).toMatch(/SIGTERM; draining 2 worker processes/);
    } finally {
      supervisor.child.kill('SIGKILL');
    }
  });

  test('a process that cannot start: the others stop too, and the supervisor exits 1 naming it', async () => {
    const file = await config(`missing-${randomUUID().slice(0, 8)}`);
    const r = await runCli(['worker', '-c', file, '--processes', '2']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the worker could not start: the namespace public\/missing-\w+ does not exist/);
    expect(r.stderr).toMatch(/worker process \d \(pid \d+\) exited with 1; draining the others and exiting 1/);
  });
});
