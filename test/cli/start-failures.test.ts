/**
 * `sheaf worker` when it cannot start: it exits 1 with one line that names
 * what failed and how to fix it (it used to print a stack and hang).
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { noPulsar, pulsarUrl } from '../support/pulsar.js';
import { runCli, sheafLines, writeEchoConfig } from '../support/cli.js';
import { SimulatedBroker } from '../support/simulated-broker.js';

describe('the sheaf command on a fresh machine', () => {
  test('--version prints the package version', async () => {
    const r = await runCli(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  test('-c defaults to ./sheaf.yml', async () => {
    const config = await writeEchoConfig({ transport: 'inMemory' });
    const r = await runCli(['dispatch', 'Echo.echo', '--args', '["hi"]', '--wait'], {}, { cwd: dirname(config) });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('echo hi');
    const nowhere = await mkdtemp(join(tmpdir(), 'sheaf-empty-'));
    const missing = await runCli(['worker'], {}, { cwd: nowhere });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read .*sheaf\.yml/);
  });

  test('a worker on the in-memory transport warns that only its own process can reach it', async () => {
    const config = await writeEchoConfig({ transport: 'inMemory' });
    const worker = await import('../support/cli.js').then((m) => m.startCli(['worker', '-c', config]));
    await worker.waitFor(/worker ready/);
    expect(worker.stderr()).toMatch(/transport inMemory: only this process can reach this worker/);
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
  });
});

describe.skipIf(noPulsar())('sheaf worker that cannot start (pulsar)', () => {
  test('a namespace that does not exist: exit 1, one line naming it and `sheaf setup`', async () => {
    const config = await writeEchoConfig({
      transport: 'pulsar',
      pulsar: { brokerServiceUrl: pulsarUrl(), namespace: `missing-${randomUUID().slice(0, 8)}` },
    });
    const r = await runCli(['worker', '-c', config]);
    expect(r.code).toBe(1);
    const lines = sheafLines(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/the worker could not start: the namespace public\/missing-\w+ does not exist .*sheaf setup -c sheaf\.yml/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack
  });

  test('the HTTP port instead of the binary one: named as such, not as a huge frame', async () => {
    const http = pulsarUrl().replace(/:\d+$/, ':8080');
    const config = await writeEchoConfig({ transport: 'pulsar', pulsar: { brokerServiceUrl: http, namespace: 'default' } });
    const r = await runCli(['worker', '-c', config]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not a Pulsar binary-protocol port: it answered with HTTP/);
    expect(r.stderr).not.toMatch(/frame of \d+ bytes/);
  });

  test('a role the broker refuses to let produce: exit 1 with one line naming authorization, connections closed', async () => {
    const broker = await new SimulatedBroker({ refuseProducer: () => true }).start();
    try {
      const config = await writeEchoConfig({ transport: 'pulsar', pulsar: { brokerServiceUrl: broker.url, namespace: 'default' } });
      const r = await runCli(['worker', '-c', config]);
      expect(r.code).toBe(1);
      const lines = sheafLines(r.stderr);
      expect(lines).toEqual([expect.stringMatching(/could not start: .*check pulsar\.authentication .*permissions on the namespace/)]);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    } finally {
      await broker.stop();
    }
  });

  test('no broker at the address: exit 1 within the connect timeout, saying to check the URL', async () => {
    const config = await writeEchoConfig({
      transport: 'pulsar',
      pulsar: { brokerServiceUrl: 'pulsar://127.0.0.1:9', namespace: 'default' },
    });
    const r = await runCli(['worker', '-c', config]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/could not start: .*127\.0\.0\.1:9.*is the broker running, and is pulsar\.brokerServiceUrl right\?/);
  });
});
