/**
 * Against a real broker with token authentication, authorization and TLS
 * (scripts/pulsar-secure.sh; issue 15): the right credentials work with the
 * grants docs/security.md gives, and every wrong one fails at once with a
 * line that names it, never the token.
 */
import 'reflect-metadata';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SheafClient } from '../../src/client/client.js';
import { Batch } from '../../src/service/decorators.js';
import { PulsarTransport } from '../../src/transport/pulsar/pulsar-transport.js';
import { SheafWorker } from '../../src/worker/worker.js';
import { echoServiceModule, runCli, sheafLines } from '../support/cli.js';
import { testLogger } from '../support/logger.js';
import { deleteSecuredNamespace, noSecureBroker, secureBroker, securedNamespace, token } from '../support/secure-pulsar.js';

interface Echo {
  echo(value: string): Promise<string>;
}

class EchoImpl {
  echo(_v: string): void {}
  @Batch('echo')
  async echoMany(tasks: Map<string, string>): Promise<Map<string, string>> {
    return new Map([...tasks].map(([id, v]) => [id, `echo ${v}`]));
  }
}

describe.skipIf(noSecureBroker())('a broker with token authentication, authorization and TLS', () => {
  let namespace = '';
  beforeAll(async () => {
    // The grants of docs/security.md: namespace-wide produce and consume for a worker role and a client role.
    namespace = await securedNamespace({ 'worker-Echo': ['produce', 'consume'], app: ['produce', 'consume'], reader: ['consume'] });
  });
  afterAll(async () => {
    if (namespace) await deleteSecuredNamespace(namespace);
  });

  const transport = (role: string | (() => string), logger = testLogger) =>
    new PulsarTransport({
      brokerServiceUrl: secureBroker().tlsUrl,
      namespace,
      logger,
      authentication: { token: typeof role === 'string' ? token(role) : role },
      tls: { ca: secureBroker().ca },
    });

  const echoWorker = (on: PulsarTransport) =>
    new SheafWorker({
      transport: on,
      services: [{ name: 'Echo', executor: { factory: () => new EchoImpl(), batch: { maxMessages: 10, maxSeconds: 0.05 } } }],
      logger: testLogger,
    });

  /** A sheaf.yml for the echo fixture on the secured broker; `tls: false` leaves the tls block out. */
  async function config(options: {
    url?: string;
    token?: string;
    caFile?: string;
    tls?: boolean;
  }): Promise<{ file: string; tokenText: string }> {
    const dir = await mkdtemp(join(tmpdir(), 'sheaf-sec-'));
    const tokenText = options.token ?? token('worker-Echo');
    await writeFile(join(dir, 'token'), tokenText);
    const file = join(dir, 'sheaf.yml');
    await writeFile(
      file,
      `name: sec-test
transport: pulsar
pulsar:
  brokerServiceUrl: ${options.url ?? secureBroker().tlsUrl}
  namespace: ${namespace}
  authentication: { tokenFile: token }
${options.tls === false ? '' : `  tls: { caFile: ${options.caFile ?? secureBroker().caFile} }\n`}logs: { level: info, pretty: false }
services:
  - name: Echo
    executor:
      module: ${echoServiceModule}
      export: EchoService
      batch: { maxMessages: 10, maxSeconds: 0.05 }
`,
    );
    return { file, tokenText };
  }

  /** Runs the command to its end: exit 1 with one `sheaf:` line matching `why`, no stack, no token. */
  async function failsWith(args: string[], tokenText: string, why: RegExp): Promise<void> {
    const r = await runCli(args);
    expect(r.code).toBe(1);
    const lines = sheafLines(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(why);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    // Not the token, nor its signature: only its claims may be named.
    for (const part of [tokenText, tokenText.split('.')[2]!]) expect(r.stdout + r.stderr).not.toContain(part);
  }

  test('the roles docs/security.md grants: a worker and a client run tasks over TLS; a consume-only role may not dispatch', async () => {
    const workerSide = transport('worker-Echo');
    const clientSide = transport('app');
    const readOnly = transport('reader');
    const worker = echoWorker(workerSide);
    try {
      await worker.start();
      const client = await SheafClient.connect({ transport: clientSide, logger: testLogger });
      const results = await Promise.all(['a', 'b', 'c'].map((v) => client.service<Echo>('Echo').echo(v)));
      expect(results).toEqual(['echo a', 'echo b', 'echo c']);
      await client.close();
      const reader = await SheafClient.connect({ transport: readOnly, logger: testLogger }).catch((error: unknown) => error);
      const refused =
        reader instanceof SheafClient
          ? await reader
              .service<Echo>('Echo')
              .echo('x')
              .catch((error: unknown) => error)
          : reader;
      expect(String(refused)).toMatch(/AuthorizationError/);
      if (reader instanceof SheafClient) await reader.close();
    } finally {
      await worker.close();
      await Promise.all([workerSide.close(), clientSide.close(), readOnly.close()]);
    }
  });

  test('a token signed with another key: exit 1, "authentication failed", the token never shown', async () => {
    const { file, tokenText } = await config({ token: token('worker-Echo', { forged: true }) });
    await failsWith(['worker', '-c', file], tokenText, /authentication failed/);
  });

  test('an expired token: exit 1, naming the role and when it expired', async () => {
    const { file, tokenText } = await config({ token: token('worker-Echo', { expiresInSeconds: -60 }) });
    await failsWith(['worker', '-c', file], tokenText, /authentication failed for role "worker-Echo": token expired at \d{4}-/);
  });

  test('a role with no permission on the namespace: the worker exits 1 naming the refusal', async () => {
    const { file, tokenText } = await config({ token: token('nobody') });
    await failsWith(['worker', '-c', file], tokenText, /AuthorizationError|not authorized/i);
  });

  test('a consume-only role cannot dispatch: exit 1 naming the refusal', async () => {
    const { file, tokenText } = await config({ token: token('reader') });
    await failsWith(['dispatch', '-c', file, 'Echo.echo', '--args', '["x"]'], tokenText, /AuthorizationError|not authorized/i);
  });

  test('TLS with a CA that did not sign the broker certificate: exit 1 naming the certificate', async () => {
    const { file, tokenText } = await config({ caFile: secureBroker().otherCaFile });
    await failsWith(['worker', '-c', file], tokenText, /certificate/i);
  });

  test('TLS to a host name the certificate does not hold: exit 1 naming the mismatch', async () => {
    const { file, tokenText } = await config({ url: secureBroker().tlsUrlByAddress });
    await failsWith(['worker', '-c', file], tokenText, /does not match certificate|altnames/i);
  });

  test('plaintext to the TLS port, and TLS to the plaintext port: exit 1, no hang', async () => {
    const tlsPort = new URL(secureBroker().tlsUrl.replace('pulsar+ssl:', 'http:')).port;
    const plainPort = new URL(secureBroker().plainUrl.replace('pulsar:', 'http:')).port;
    const plainToTls = await config({ url: `pulsar://localhost:${tlsPort}`, tls: false });
    await failsWith(['worker', '-c', plainToTls.file], plainToTls.tokenText, /could not start/);
    const tlsToPlain = await config({ url: `pulsar+ssl://localhost:${plainPort}` });
    await failsWith(['worker', '-c', tlsToPlain.file], tlsToPlain.tokenText, /could not start/);
  });

  test('a token that expires while connected is refreshed on the broker challenge: the connection stays, tasks go on', async () => {
    let current = token('worker-Echo', { expiresInSeconds: 4 });
    const expiresAt = Date.now() + 4000;
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const workerSide = transport(() => current, logger);
    const clientSide = transport('app');
    const worker = echoWorker(workerSide);
    try {
      await worker.start();
      const client = await SheafClient.connect({ transport: clientSide, logger: testLogger });
      expect(await client.service<Echo>('Echo').echo('before')).toBe('echo before');
      current = token('worker-Echo', { expiresInSeconds: 3600 });
      // Past the first token's expiry and the broker's refresh check (2 s): a time, not an event.
      await sleep(Math.max(0, expiresAt - Date.now()) + 3000);
      expect(await client.service<Echo>('Echo').echo('after')).toBe('echo after');
      await client.close();
      expect(lines.join('')).not.toMatch(/lost its connection|authentication failed/);
    } finally {
      await worker.close();
      await Promise.all([workerSide.close(), clientSide.close()]);
    }
  });
});
