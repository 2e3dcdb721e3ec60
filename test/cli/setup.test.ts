/**
 * `sheaf setup`: creates the tenant and namespace of a sheaf.yml through the
 * admin REST API, sets Sheaf's inactive-topic policy, and can run again.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { admin, noPulsar, pulsarAdminUrl, pulsarUrl } from '../support/pulsar.js';
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
