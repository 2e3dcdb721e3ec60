/**
 * PulsarAdmin against a scripted HTTP server: transient failures (5xx, no
 * answer in time) are tried again with the step re-read from the start;
 * refusals are not.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { brokerReason, PulsarAdmin, PulsarAdminError } from '../../src/transport/pulsar/admin.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

let server: Server | undefined;
afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

/** Serves each request with the next handler of `script`, the last one for every request after. */
async function scripted(script: Handler[]): Promise<{ url: string; calls: string[] }> {
  const calls: string[] = [];
  server = createServer((req, res) => {
    calls.push(`${req.method} ${req.url}`);
    const handler = script[Math.min(calls.length - 1, script.length - 1)]!;
    handler(req, res);
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server!.address() as AddressInfo).port}`, calls };
}

const reply =
  (status: number, body?: unknown): Handler =>
  (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(body === undefined ? '' : JSON.stringify(body));
  };

describe('PulsarAdmin', () => {
  test('a 503 and a 500 on raising partitions: tried again from the read, reported once done', async () => {
    const { url, calls } = await scripted([
      reply(200, { partitions: 3 }),
      reply(503, { reason: 'bundle unloading' }),
      reply(200, { partitions: 3 }),
      reply(500, { reason: 'metadata store busy' }),
      reply(200, { partitions: 3 }),
      reply(204),
    ]);
    const retries: string[] = [];
    const admin = new PulsarAdmin({ adminUrl: url, onRetry: (error, attempt) => retries.push(`${attempt}: ${error.status}`) });
    expect(await admin.ensurePartitions('t', 'ns', 'sheaf-tasks-Echo', 4)).toBe('partitions raised from 3 to 4');
    expect(retries).toEqual(['1: 503', '2: 500']);
    expect(calls.filter((c) => c.startsWith('POST'))).toHaveLength(3);
  });

  test('no answer in time counts as transient too', async () => {
    const { url, calls } = await scripted([() => undefined, reply(200, { partitions: 4 })]);
    const admin = new PulsarAdmin({ adminUrl: url, timeoutMs: 100 });
    expect(await admin.ensurePartitions('t', 'ns', 'sheaf-tasks-Echo', 4)).toBe('4 partitions existed');
    expect(calls).toHaveLength(2);
  });

  test('a refusal (403) fails at once; transient failures stop after the retries allowed', async () => {
    const refused = await scripted([reply(403, { reason: 'not authorized' })]);
    const admin = new PulsarAdmin({ adminUrl: refused.url });
    await expect(admin.ensurePartitions('t', 'ns', 'x', 2)).rejects.toMatchObject({ status: 403 });
    expect(refused.calls).toHaveLength(1);
    await new Promise<void>((resolve) => server!.close(() => resolve()));

    const failing = await scripted([reply(503)]);
    const bounded = new PulsarAdmin({ adminUrl: failing.url, retries: 2 });
    const error = await bounded.ensurePartitions('t', 'ns', 'x', 2).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PulsarAdminError);
    expect((error as PulsarAdminError).status).toBe(503);
    expect(failing.calls).toHaveLength(3);
  });

  test("a broker's error page becomes one line: its Message, not the Java stack trace", async () => {
    const page = [
      '',
      ' --- An unexpected error occurred in the server ---',
      '',
      'Message: org.apache.bookkeeper.mledger.ManagedLedgerException: Not enough non-faulty bookies available error code: -6',
      '',
      'Stacktrace:',
      '',
      'org.apache.pulsar.broker.service.BrokerServiceException$PersistenceException: boom',
      '\tat org.apache.pulsar.broker.service.BrokerService$2.openLedgerFailed(BrokerService.java:1927)',
    ].join('\n');
    expect(brokerReason(page)).toBe(
      'org.apache.bookkeeper.mledger.ManagedLedgerException: Not enough non-faulty bookies available error code: -6',
    );
    expect(brokerReason(JSON.stringify({ reason: 'Namespace does not exist' }))).toBe('Namespace does not exist');
    expect(brokerReason('<html>\n<body>Bad gateway</body>\n</html>')).toBe('<html>');
    expect(brokerReason('x'.repeat(500))).toHaveLength(200);
    const { url } = await scripted([
      (_req, res) => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(page);
      },
    ]);
    const retries: string[] = [];
    const admin = new PulsarAdmin({ adminUrl: url, retries: 1, onRetry: (error) => retries.push(error.message) });
    const failed = await admin.ensurePartitions('t', 'ns', 'sheaf-tasks-Echo', 4).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(PulsarAdminError);
    expect(retries).toHaveLength(1);
    for (const message of [...retries, (failed as Error).message]) {
      expect(message).not.toContain('\n');
      expect(message).toContain('Not enough non-faulty bookies');
    }
  });
});
