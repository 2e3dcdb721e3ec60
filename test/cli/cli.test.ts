/**
 * The `sheaf` command, run as a process the way users run it: on the
 * in-memory transport, and on the real broker (each test its own namespace).
 */
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { inject, afterEach, describe, expect, test } from 'vitest';
import { SheafClient } from '../../src/client/client.js';
import { PulsarTransport } from '../../src/transport/pulsar/pulsar-transport.js';
import { testLogger } from '../support/logger.js';
import { freshNamespace, noPulsar, pulsarAdminUrl, pulsarUrl } from '../support/pulsar.js';
import { runCli, startCli, writeEchoConfig, type CliProcess } from '../support/cli.js';
import { rawDeadLetter, rawTask } from '../support/tasks.js';
import { deadLetterTopic } from '../../src/topics.js';
import { encodeEnvelope } from '../../src/wire/envelopes.js';

const running: CliProcess[] = [];
afterEach(async () => {
  for (const p of running.splice(0)) {
    p.child.kill('SIGKILL');
    await p.exited;
  }
});
function start(...args: Parameters<typeof startCli>): CliProcess {
  const p = startCli(...args);
  running.push(p);
  return p;
}

describe('sheaf (in-memory transport)', () => {
  test('--help on the command and its subcommands', async () => {
    const top = await runCli(['--help']);
    expect(top.code).toBe(0);
    for (const command of ['worker', 'dispatch', 'dlq', 'demo']) expect(top.stdout).toContain(command);
    const dispatch = await runCli(['dispatch', '--help']);
    expect(dispatch.stdout).toMatch(/--batch-key <key>/);
    expect(dispatch.stdout).toMatch(/Exit status: 0 dispatched/);
  });

  test('dispatch --wait runs the task in the command and prints its result', async () => {
    const config = await writeEchoConfig({ transport: 'inMemory' });
    const ok = await runCli(['dispatch', '-c', config, 'Echo.echo', '--args', '["hello"]', '--batch-key', 'k1', '--wait']);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout.trim())).toMatchObject({ result: 'echo hello' });
    // Logs went to stderr, one line per batch with its figures.
    expect(ok.stderr).toMatch(/"msg":"batch executed"/);
    expect(ok.stderr).toMatch(/"batchKey":"k1","size":1,"bytes":\d+,"flushReason":"maxSeconds"/);
  });

  test('a task that fails makes dispatch exit 1 with the reason', async () => {
    const config = await writeEchoConfig({ transport: 'inMemory' });
    const failed = await runCli(['dispatch', '-c', config, 'Echo.echo', '--args', '["fail"]', '--wait']);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/task Echo\.echo \(.*\) failed after 1 attempt \(nonRetryable\): NonRetryableError: asked to fail/);
  });

  test('bad arguments and bad configuration exit 2 and say what to fix', async () => {
    const config = await writeEchoConfig({ transport: 'inMemory', executor: 'concurrency: 0\n      batch: { maxMesages: 1 }' });
    const bad = await runCli(['worker', '-c', config]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('services[0].executor.concurrency: must be a positive integer (got 0)');
    expect(bad.stderr).toContain("services[0].executor.batch.maxMesages: unknown key; did you mean 'maxMessages'?");
    const args = await runCli(['dispatch', '-c', config, 'Echo.echo', '--args', '{"not":"an array"}']);
    expect(args.code).toBe(2);
    expect(args.stderr).toMatch(/--args must be a JSON array/);
    const limit = await runCli(['job', 'list', '-c', config, '--limit', '5000']);
    expect(limit.code).toBe(2);
    expect(limit.stderr).toMatch(/'--limit <n>' argument '5000' is invalid\. must be at most 1000/);
    const missing = await runCli(['worker', '-c', join(tmpdir(), `nope-${randomUUID()}.yml`)]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read .*nope-/);
  });

  test('dlq refuses the in-memory transport and says why', async () => {
    const config = await writeEchoConfig({ transport: 'inMemory' });
    const r = await runCli(['dlq', 'list', 'Echo', '-c', config]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/dead letters of the in-memory transport live only inside the process/);
  });

  test('demo runs and summarises the batching', async () => {
    const r = await runCli(['demo', '--tasks', '500']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/500 email tasks over 4 tenants \(batch keys\), inMemory transport/);
    expect(r.stdout).toMatch(/^500 +499 +1 +\d+ /m);
  });

  test('worker logs when ready and drains on SIGTERM, exiting 0', async () => {
    const config = await writeEchoConfig({ transport: 'inMemory' });
    const worker = start(['worker', '-c', config]);
    await worker.waitFor(/"msg":"worker ready"/);
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    expect(worker.stdout()).toMatch(/"msg":"worker closed"/);
  });
});

describe.skipIf(noPulsar())('sheaf (Pulsar)', () => {
  async function pulsarConfig(executor?: string): Promise<{ config: string; namespace: string }> {
    const namespace = await freshNamespace();
    const config = await writeEchoConfig({
      transport: 'pulsar',
      pulsar: {
        brokerServiceUrl: pulsarUrl(),
        adminUrl: pulsarAdminUrl(),
        namespace,
        connectThroughServiceUrl: inject('pulsarThroughServiceUrl'),
      },
      ...(executor ? { executor } : {}),
    });
    return { config, namespace };
  }

  test('demo --pulsar runs against the broker', async () => {
    const args = ['demo', '--tasks', '500', '--pulsar', pulsarUrl(), '--namespace', await freshNamespace()];
    if (inject('pulsarThroughServiceUrl')) args.push('--through-service-url');
    const r = await runCli(args);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/pulsar transport/);
    expect(r.stdout).toMatch(/^500 +499 +1 +\d+ /m);
  });

  test('a worker process serves a dispatch process', async () => {
    const { config } = await pulsarConfig();
    const worker = start(['worker', '-c', config]);
    await worker.waitFor(/"msg":"worker ready"/);
    const r = await runCli([
      'dispatch',
      '-c',
      config,
      'Echo.echo',
      '--args',
      '["over pulsar"]',
      '--count',
      '3',
      '--wait',
      '--timeout',
      '30',
    ]);
    expect(r.code).toBe(0);
    expect(
      r.stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { result: string }).result),
    ).toEqual(['echo over pulsar', 'echo over pulsar', 'echo over pulsar']);
    // Without --wait, dispatch prints the task ids and returns.
    const fire = await runCli(['dispatch', '-c', config, 'Echo.echo', '--args', '["x"]']);
    expect(fire.code).toBe(0);
    expect(fire.stdout.trim()).toMatch(/^[0-9a-f-]{36}$/);
  });

  test('dlq list shows dead letters; dlq replay dispatches them again and they leave the dead letters', async () => {
    const log = join(tmpdir(), `sheaf-echo-${randomUUID()}.log`);
    const { config } = await pulsarConfig();
    const worker = start(['worker', '-c', config], { ECHO_LOG: log });
    await worker.waitFor(/"msg":"worker ready"/);
    const failed = await runCli(['dispatch', '-c', config, 'Echo.echo', '--args', '["fail-until-replayed"]', '--wait', '--timeout', '30']);
    expect(failed.code).toBe(1);
    const taskId = /\(([0-9a-f-]{36})\)/.exec(failed.stderr)![1]!;

    const listed = await runCli(['dlq', 'list', 'Echo', '-c', config, '--idle-ms', '1500']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(new RegExp(`${taskId} +echo +nonRetryable +1 `));
    // The task's own error, not just why it stopped.
    expect(listed.stdout).toContain('NonRetryableError: fails until replayed');

    const replayed = await runCli(['dlq', 'replay', 'Echo', '-c', config, '--task-id', taskId, '--idle-ms', '1500']);
    expect(replayed.code).toBe(0);
    expect(replayed.stdout).toContain('replayed 1 of 1 dead letters of Echo');
    // The dispatching process has exited and its client deleted its result subscription: nobody would read a result.
    expect(replayed.stderr).toMatch(
      /the client of 1 replayed task\(s\) is gone \(sheaf-results-.*has no subscription\): replayed without a result/,
    );
    // The worker runs it again, as retry sequence 1, and it succeeds.
    await worker.waitFor(/"succeeded":1/);
    expect((await readFile(log, 'utf8')).trim().split('\n')).toEqual([`${taskId} 0`, `${taskId} 1`]);

    const after = await runCli(['dlq', 'list', 'Echo', '-c', config, '--idle-ms', '1000']);
    expect(after.stdout).toContain('no dead letters for Echo');
  });

  test('dlq replay dispatches a task id once, however many dead letters it has', async () => {
    const log = join(tmpdir(), `sheaf-echo-${randomUUID()}.log`);
    const { config, namespace } = await pulsarConfig();
    const worker = start(['worker', '-c', config], { ECHO_LOG: log });
    await worker.waitFor(/"msg":"worker ready"/);
    // Two dead letters of one task, as twins that ran in two workers leave them.
    const transport = new PulsarTransport({
      brokerServiceUrl: pulsarUrl(),
      namespace,
      logger: testLogger,
      connectThroughServiceUrl: inject('pulsarThroughServiceUrl'),
    });
    const taskId = randomUUID();
    const task = { ...rawTask(taskId, 'Echo', 'echo', ['fail-until-replayed']), replyTo: null };
    const letter = rawDeadLetter(task);
    const producer = await transport.createProducer(deadLetterTopic('Echo'));
    for (let i = 0; i < 2; i++) await producer.send({ payload: encodeEnvelope(letter) });
    await producer.close();
    await transport.close();

    const replayed = await runCli(['dlq', 'replay', 'Echo', '-c', config, '--idle-ms', '1500']);
    expect(replayed.code).toBe(0);
    expect(replayed.stdout).toContain('replayed 1 of 2 dead letters of Echo; removed 1 more of task(s) already replayed');
    await worker.waitFor(/"succeeded":1/);
    const after = await runCli(['dlq', 'list', 'Echo', '-c', config, '--idle-ms', '1000']);
    expect(after.stdout).toContain('no dead letters for Echo');
    expect((await readFile(log, 'utf8')).trim().split('\n')).toEqual([`${taskId} 1`]);
  });

  test('dlq purge: refuses without --yes off a terminal, purges by task id and by age, and names unknown services', async () => {
    const { config } = await pulsarConfig();
    const worker = start(['worker', '-c', config]);
    await worker.waitFor(/"msg":"worker ready"/);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const failed = await runCli(['dispatch', '-c', config, 'Echo.echo', '--args', '["fail"]', '--wait', '--timeout', '30']);
      ids.push(/\(([0-9a-f-]{36})\)/.exec(failed.stderr)![1]!);
    }
    const refused = await runCli(['dlq', 'purge', 'Echo', '-c', config, '--idle-ms', '1000']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/purging 3 dead letters cannot be undone; confirm with --yes/);
    const none = await runCli(['dlq', 'purge', 'Echo', '-c', config, '--older-than', '1d', '--yes', '--idle-ms', '1000']);
    expect(none.stdout).toContain('no dead letters of Echo match; nothing purged');
    const one = await runCli(['dlq', 'purge', 'Echo', '-c', config, '--task-id', ids[0]!, '--yes', '--idle-ms', '1000']);
    expect(one.stdout).toContain('purged 1 dead letters of Echo');
    const rest = await runCli(['dlq', 'purge', 'Echo', '-c', config, '--older-than', '0s', '--yes', '--idle-ms', '1000']);
    expect(rest.stdout).toContain('purged 2 dead letters of Echo');
    const unknown = await runCli(['dlq', 'list', 'Ech0', '-c', config, '--idle-ms', '500']);
    expect(unknown.stderr).toMatch(/Ech0 is not a service of .*sheaf\.yml \(it has: Echo\)/);
    const badAge = await runCli(['dlq', 'purge', 'Echo', '-c', config, '--older-than', 'a week']);
    expect(badAge.code).toBe(2);
    expect(badAge.stderr).toMatch(/'a week' is not a duration; write it like 30s, 15m, 12h or 7d/);
    worker.child.kill('SIGTERM');
    await worker.exited;
  });

  test('SIGTERM while batches run loses nothing, and nothing that succeeded runs again', async () => {
    const log = join(tmpdir(), `sheaf-echo-${randomUUID()}.log`);
    const { config, namespace } = await pulsarConfig('concurrency: 2\n      batch: { maxMessages: 10, maxSeconds: 0.05 }');
    const env = { ECHO_LOG: log, ECHO_SLOW_MS: '100' };
    const first = start(['worker', '-c', config], env);
    await first.waitFor(/"msg":"worker ready"/);
    const transport = new PulsarTransport({
      brokerServiceUrl: pulsarUrl(),
      namespace,
      logger: testLogger,
      connectThroughServiceUrl: inject('pulsarThroughServiceUrl'),
    });
    const client = await SheafClient.connect({ transport, logger: testLogger });
    try {
      const total = 300;
      const results = Promise.all(
        [...Array(total)].map((_, i) =>
          client.service<{ echo(v: string): Promise<string> }>('Echo', { meta: { batchKey: `k${i % 3}` } }).echo(`${i}`),
        ),
      );
      await first.waitFor(/"msg":"batch executed"/);
      first.child.kill('SIGTERM');
      expect(await first.exited).toBe(0);
      expect(first.stdout()).toMatch(/"msg":"worker closed"/);
      const second = start(['worker', '-c', config], env);
      expect(await results).toEqual([...Array(total)].map((_, i) => `echo ${i}`));
      second.child.kill('SIGTERM');
      expect(await second.exited).toBe(0);
      const executions = (await readFile(log, 'utf8')).trim().split('\n');
      // Every task ran exactly once across the two workers.
      expect(executions).toHaveLength(total);
      expect(new Set(executions).size).toBe(total);
    } finally {
      await client.close();
      await transport.close();
    }
  });
});
