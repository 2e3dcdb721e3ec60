/**
 * `sheaf worker --metrics-port`: Prometheus metrics, health and readiness on
 * one port, checked against the work a spawned worker did.
 */
import { describe, expect, test } from 'vitest';
import { inject } from 'vitest';
import { startOpsServer, registerMetrics } from '../../src/telemetry/ops-server.js';
import { freshNamespace, noPulsar, pulsarUrl } from '../support/pulsar.js';
import { runCli, startCli, writeEchoConfig } from '../support/cli.js';
import { EventEmitter } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** The value of one sample line, e.g. `sheaf_tasks_received_total{service="Echo",method="echo"}`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const body = /\{([^}]*)\}/.exec(line)?.[1] ?? '';
    const has = Object.entries(labels).every(([k, v]) => body.includes(`${k}="${v}"`));
    if (has) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

describe('readiness follows the worker; health follows the event loop', () => {
  test('/readyz is 503 until the worker runs, 200 while it runs; /healthz is 200; unknown paths list the endpoints', async () => {
    const state = { status: 'starting' };
    const worker = {
      events: new EventEmitter(),
      state,
      stats: () => ({}),
      batchLimits: () => ({}),
      connectionProblem: null as string | null,
    };
    const { exporter } = registerMetrics();
    const ops = await startOpsServer({ port: 0, host: '127.0.0.1', worker, exporter, dashboard: true });
    try {
      expect((await fetch(`${ops.url}/readyz`)).status).toBe(503);
      state.status = 'running';
      expect(await (await fetch(`${ops.url}/readyz`)).json()).toEqual({ status: 'running' });
      // Running, but cut off from the broker: not ready, saying why.
      worker.connectionProblem = 'AuthenticationError: authentication failed for role "worker": token expired at 2023-11-14T22:13:20.000Z';
      const cutOff = await fetch(`${ops.url}/readyz`);
      expect(cutOff.status).toBe(503);
      expect(await cutOff.json()).toEqual({ status: 'running', connection: worker.connectionProblem });
      worker.connectionProblem = null;
      expect((await fetch(`${ops.url}/readyz`)).status).toBe(200);
      state.status = 'draining';
      expect((await fetch(`${ops.url}/readyz`)).status).toBe(503);
      const health = await fetch(`${ops.url}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: 'ok' });
      const missing = await fetch(`${ops.url}/nope`);
      expect(missing.status).toBe(404);
      expect(await missing.json()).toMatchObject({ endpoints: ['/metrics', '/healthz', '/readyz', '/dashboard'] });
    } finally {
      await ops.close();
    }
  });
});

describe.skipIf(noPulsar())('sheaf worker --metrics-port (pulsar)', () => {
  test('/metrics counts the tasks, batches and dead letters of the work done; /readyz is 200 while running', async () => {
    const config = await writeEchoConfig({
      transport: 'pulsar',
      pulsar: {
        brokerServiceUrl: pulsarUrl(),
        namespace: await freshNamespace(),
        connectThroughServiceUrl: inject('pulsarThroughServiceUrl'),
      },
      executor: 'batch: { maxMessages: 10, maxSeconds: 0.2 }',
    });
    const worker = startCli(['worker', '-c', config, '--metrics-port', '0']);
    try {
      await worker.waitFor(/"msg":"worker ready"/);
      const url = /metrics and health on (http:\/\/[\d.]+:\d+)/.exec(worker.stderr())![1]!;
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      const ok = await runCli(['dispatch', '-c', config, 'Echo.echo', '--args', '["hi"]', '--count', '25', '--wait', '--timeout', '60']);
      expect(ok.code).toBe(0);
      const failed = await runCli(['dispatch', '-c', config, 'Echo.echo', '--args', '["fail"]', '--wait', '--timeout', '60']);
      expect(failed.code).toBe(1);
      // A job of 3 tasks, one failing: started, finished as failed.
      const items = join(dirname(config), 'items.ndjson');
      await writeFile(items, '"a"\n"fail"\n"b"\n');
      const job = await runCli(['job', 'run', '-c', config, '--service', 'Echo', '--method', 'echo', '--input', items, '--timeout', '60']);
      expect(job.code).toBe(1);
      const text = await (await fetch(`${url}/metrics`)).text();
      expect(sample(text, 'sheaf_jobs_started_total', {})).toBe(1);
      expect(sample(text, 'sheaf_jobs_finished_total', { outcome: 'failed' })).toBe(1);
      expect(sample(text, 'sheaf_jobs_tracked', {})).toBe(1);
      const labels = { service: 'Echo', method: 'echo' };
      expect(sample(text, 'sheaf_tasks_received_total', labels)).toBe(29);
      expect(sample(text, 'sheaf_tasks_succeeded_total', labels)).toBe(27);
      expect(sample(text, 'sheaf_tasks_failed_total', labels)).toBe(2);
      expect(sample(text, 'sheaf_tasks_dead_lettered_total', labels)).toBe(2);
      expect(sample(text, 'sheaf_batch_size_tasks_sum', labels)).toBe(29);
      const batches = sample(text, 'sheaf_batch_size_tasks_count', labels)!;
      expect(batches).toBeGreaterThanOrEqual(3);
      const flushes = ['maxMessages', 'maxSeconds'].map((reason) => sample(text, 'sheaf_batch_flushes_total', { ...labels, reason }) ?? 0);
      expect(flushes[0]! + flushes[1]!).toBe(batches);
      expect(sample(text, 'sheaf_task_wait_seconds_count', labels)).toBe(29);
      expect(sample(text, 'sheaf_execution_duration_seconds_count', labels)).toBe(batches);
      expect(sample(text, 'sheaf_tasks_in_flight', { service: 'Echo' })).toBe(0);
      // Metric names all start with sheaf_, and no batch key is ever a label.
      const names = text
        .split('\n')
        .filter((l) => l && !l.startsWith('#'))
        .map((l) => l.split(/[{ ]/)[0]!);
      expect(names.every((n) => n.startsWith('sheaf_') || n === 'target_info')).toBe(true);
      expect(text).not.toMatch(/batchKey|batch_key/);
    } finally {
      worker.child.kill('SIGTERM');
      await worker.exited;
    }
  });
});
