/**
 * `sheaf setup`: creates the tenant and namespace of a sheaf.yml through the
 * admin REST API, sets Sheaf's inactive-topic and deduplication policies, and can run again.
 */
import { randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { describe, expect, test } from 'vitest';
import { admin, freshNamespace, noPulsar, pulsarAdminUrl, pulsarUrl } from '../support/pulsar.js';
import { runCli, startCli, writeEchoConfig } from '../support/cli.js';

describe.skipIf(noPulsar())('sheaf setup (pulsar)', () => {
  test('creates tenant and namespace with the policy, idempotently; a worker then starts', async () => {
    const tenant = `sheaf-t-${randomUUID().slice(0, 8)}`;
    const config = await writeEchoConfig({
      transport: 'pulsar',
      pulsar: { brokerServiceUrl: pulsarUrl(), adminUrl: pulsarAdminUrl(), tenant, namespace: 'jobs' },
    });
    try {
      const first = await runCli(['setup', '-c', config]);
      expect(first.code).toBe(0);
      expect(first.stdout).toContain(`tenant ${tenant}: created`);
      expect(first.stdout).toContain(`namespace ${tenant}/jobs: created`);
      const again = await runCli(['setup', '-c', config]);
      expect(again.stdout).toContain(`tenant ${tenant}: existed`);
      expect(again.stdout).toContain(`namespace ${tenant}/jobs: existed`);
      expect(await admin('GET', `namespaces/${tenant}/jobs/inactiveTopicPolicies`)).toMatchObject({
        inactiveTopicDeleteMode: 'delete_when_no_subscriptions',
        deleteWhileInactive: true,
      });
      expect(await admin('GET', `namespaces/${tenant}/jobs/deduplication`)).toBe(true);
      expect(first.stdout).toContain('policy: producer deduplication on');
      const worker = startCli(['worker', '-c', config]);
      await worker.waitFor(/worker ready/);
      worker.child.kill('SIGTERM');
      expect(await worker.exited).toBe(0);
    } finally {
      const topics = ((await admin('GET', `namespaces/${tenant}/jobs/topics`).catch(() => [])) as string[]) ?? [];
      for (const topic of topics)
        await admin('DELETE', `persistent/${tenant}/jobs/${topic.split('/').pop()!}?force=true`).catch(() => undefined);
      await admin('DELETE', `namespaces/${tenant}/jobs`).catch(() => undefined);
      await admin('DELETE', `tenants/${tenant}`).catch(() => undefined);
    }
  });

  test('partitions: the task topic is made partitioned, grown, never shrunk; an unpartitioned one is named with the way out', async () => {
    const namespace = await freshNamespace();
    const config = await writeEchoConfig({
      transport: 'pulsar',
      pulsar: { brokerServiceUrl: pulsarUrl(), adminUrl: pulsarAdminUrl(), namespace },
    });
    const withPartitions = async (n: number) =>
      writeFile(
        config,
        (await readFile(config, 'utf8')).replace(/- name: Echo\n(\s+partitions: \d+\n)?/, `- name: Echo\n    partitions: ${n}\n`),
      );
    await withPartitions(3);
    const first = await runCli(['setup', '-c', config]);
    expect(first.stdout).toContain('topic sheaf-tasks-Echo: 3 partitions created');
    expect(await admin('GET', `persistent/public/${namespace}/sheaf-tasks-Echo/partitions`)).toMatchObject({ partitions: 3 });
    expect((await runCli(['setup', '-c', config])).stdout).toContain('topic sheaf-tasks-Echo: 3 partitions existed');
    await withPartitions(4);
    const raised = await runCli(['setup', '-c', config]);
    // A broker under load may answer 5xx once (CI saw "Not enough non-faulty
    // bookies"); setup tries again, one line per try, and that is all it prints.
    const notRetries = raised.stderr.split('\n').filter((line) => line && !/; trying again in \d+ ms \(retry \d+\)$/.test(line));
    expect({ code: raised.code, stderr: notRetries }).toEqual({ code: 0, stderr: [] });
    expect(raised.stdout).toContain('topic sheaf-tasks-Echo: partitions raised from 3 to 4');
    await withPartitions(2);
    expect((await runCli(['setup', '-c', config])).stdout).toMatch(/has 4 partitions, more than the 2 asked .*left as is/);
    // A task goes through the partitioned topic.
    const worker = startCli(['worker', '-c', config]);
    await worker.waitFor(/worker ready/);
    const dispatched = await runCli(['dispatch', '-c', config, 'Echo.echo', '--args', '["p"]', '--wait']);
    expect(dispatched.stdout).toContain('echo p');
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    // A service whose task topic already exists unpartitioned.
    await admin('PUT', `persistent/public/${namespace}/sheaf-tasks-Other`);
    await writeFile(config, `${await readFile(config, 'utf8')}  - name: Other\n    partitions: 2\n`);
    const refused = await runCli(['setup', '-c', config]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/sheaf-tasks-Other exists unpartitioned, and Pulsar cannot partition it: .*pulsar-admin topics delete/);
  });

  test('without pulsar.adminUrl it exits 2 naming the key', async () => {
    const config = await writeEchoConfig({ transport: 'pulsar', pulsar: { brokerServiceUrl: pulsarUrl(), namespace: 'default' } });
    const r = await runCli(['setup', '-c', config]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/pulsar\.adminUrl: is needed by sheaf setup/);
  });

  test('an admin URL that does not answer: exit 1 naming pulsar.adminUrl', async () => {
    const config = await writeEchoConfig({
      transport: 'pulsar',
      pulsar: { brokerServiceUrl: pulsarUrl(), adminUrl: 'http://127.0.0.1:9', namespace: 'default' },
    });
    const r = await runCli(['setup', '-c', config]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/setup failed: the admin API at http:\/\/127\.0\.0\.1:9 did not answer .*check pulsar\.adminUrl/);
  });
});
