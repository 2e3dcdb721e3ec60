import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { PulsarClient } from '../../src/transport/pulsar/client.js';
import { CommandType, num } from '../../src/transport/pulsar/commands.js';
import { PulsarServerError } from '../../src/transport/pulsar/errors.js';
import { encodeSimpleFrame } from '../../src/transport/pulsar/frames.js';
import Long from 'long';
import { parseServiceUrl } from '../../src/transport/pulsar/service-url.js';
import { FakeBroker, connectThen } from '../support/fake-broker.js';
import { testLogger } from '../support/logger.js';

const brokers: FakeBroker[] = [];
const clients: PulsarClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(brokers.splice(0).map((b) => b.stop()));
});

async function broker(...args: ConstructorParameters<typeof FakeBroker>): Promise<FakeBroker> {
  const b = await new FakeBroker(...args).start();
  brokers.push(b);
  return b;
}

function client(serviceUrl: string, extra: Partial<ConstructorParameters<typeof PulsarClient>[0]> = {}): PulsarClient {
  const c = new PulsarClient({
    serviceUrl,
    logger: testLogger,
    connectTimeoutMs: 2000,
    operationTimeoutMs: 2000,
    keepAliveIntervalMs: 30_000,
    ...extra,
  });
  clients.push(c);
  return c;
}

const lookupAnswer =
  (url: string, response: 0 | 1, authoritative = false) =>
  (requestId: unknown) => ({
    type: CommandType.LOOKUP_RESPONSE,
    lookupTopicResponse: { request_id: num(requestId as number), response, brokerServiceUrl: url, authoritative },
  });

describe('Pulsar connection and lookup', () => {
  test('a refused token is named: its role and expiry from its claims, never its text, not "connection closed"', async () => {
    const b = await broker((command, _reply, socket) => {
      if (command.type !== CommandType.CONNECT) return;
      // As a broker does: ERROR on request id -1 (all ones as a uint64), then close.
      socket.end(
        encodeSimpleFrame({
          type: CommandType.ERROR,
          error: { request_id: Long.fromString('18446744073709551615', true), error: 3, message: 'Failed to authentication token' },
        }),
      );
    });
    const claims = (body: object) => `eyJhbGciOiJIUzI1NiJ9.${Buffer.from(JSON.stringify(body)).toString('base64url')}.c2lnbmF0dXJl`;
    const expired = claims({ sub: 'worker', exp: 1_700_000_000 });
    const error = await client(b.url, { token: expired })
      .partitions('t')
      .catch((e: unknown) => e as Error);
    expect(error).toBeInstanceOf(PulsarServerError);
    expect((error as Error).message).toBe(
      'AuthenticationError: authentication failed for role "worker": token expired at 2023-11-14T22:13:20.000Z',
    );
    expect((error as Error).message).not.toContain(expired.split('.')[1]!.slice(0, 10));
    const valid = await client(b.url, { token: claims({ sub: 'worker', exp: 4_000_000_000 }) })
      .partitions('t')
      .catch((e: unknown) => e as Error);
    expect((valid as Error).message).toBe('AuthenticationError: authentication failed for role "worker": Failed to authentication token');
    // The client says why it cannot reach the broker (what /readyz reports), until a connection succeeds.
    let refuse = true;
    const flipping = await broker((command, reply, socket) => {
      if (command.type === CommandType.CONNECT && refuse) {
        socket.end(
          encodeSimpleFrame({
            type: CommandType.ERROR,
            error: { request_id: Long.fromString('18446744073709551615', true), error: 3, message: 'Failed to authentication token' },
          }),
        );
        return;
      }
      connectThen((c, r) => {
        if (c.type === CommandType.PARTITIONED_METADATA) {
          r({
            type: CommandType.PARTITIONED_METADATA_RESPONSE,
            partitionMetadataResponse: { request_id: c.partitionMetadata!.request_id, partitions: 0 },
          });
        }
      })(command, reply, socket);
    });
    const retrying = client(flipping.url, { token: expired });
    await retrying.partitions('t').catch(() => undefined);
    expect(retrying.connectionProblem).toMatch(/^AuthenticationError: authentication failed for role "worker": token expired/);
    refuse = false; // the token was renewed, say
    expect(await retrying.partitions('t')).toBe(0);
    expect(retrying.connectionProblem).toBeNull();
  });

  test('CONNECT carries the token; an AUTH_CHALLENGE is answered with the current token', async () => {
    let token = 'first-token';
    const b = await broker(
      connectThen((command, reply) => {
        if (command.type === CommandType.PARTITIONED_METADATA) {
          // Challenge first, then answer: the client must re-authenticate on a live connection.
          reply({
            type: CommandType.AUTH_CHALLENGE,
            authChallenge: { server_version: 'fake', challenge: { auth_method_name: 'token', auth_data: new Uint8Array() } },
          });
          reply({
            type: CommandType.PARTITIONED_METADATA_RESPONSE,
            partitionMetadataResponse: { request_id: command.partitionMetadata!.request_id, partitions: 0 },
          });
        }
      }),
    );
    const c = client(b.url, { token: () => token });
    await c.partitions('t');
    token = 'second-token';
    await c.partitions('t');
    const connect = b.received.find((x) => x.type === CommandType.CONNECT)!.connect!;
    expect(connect.auth_method_name).toBe('token');
    expect(Buffer.from(connect.auth_data!).toString()).toBe('first-token');
    const answers = () =>
      b.received
        .filter((x) => x.type === CommandType.AUTH_RESPONSE)
        .map((x) => Buffer.from(x.authResponse!.response!.auth_data!).toString());
    await vi.waitFor(() => expect(answers()).toEqual(['first-token', 'second-token']));
  });

  test('a rejected CONNECT fails with the broker error named', async () => {
    const b = await broker((command, reply) => {
      if (command.type === CommandType.CONNECT)
        reply({ type: CommandType.ERROR, error: { request_id: 0, error: 3, message: 'bad token' } });
    });
    await expect(client(b.url, { token: 'nope' }).partitions('t')).rejects.toThrow(
      /AuthenticationError: authentication failed.*: bad token/,
    );
  });

  test('LOOKUP follows redirects to the broker that owns the topic', async () => {
    const owner = await broker(
      connectThen((command, reply) => {
        if (command.type === CommandType.LOOKUP)
          reply(lookupAnswer(`pulsar://localhost:${owner.port}`, 1)(command.lookupTopic!.request_id));
      }),
    );
    const middle = await broker(
      connectThen((command, reply) => {
        if (command.type === CommandType.LOOKUP)
          reply(lookupAnswer(`pulsar://localhost:${owner.port}`, 0, true)(command.lookupTopic!.request_id));
      }),
    );
    const front = await broker(
      connectThen((command, reply) => {
        if (command.type === CommandType.LOOKUP)
          reply(lookupAnswer(`pulsar://localhost:${middle.port}`, 0)(command.lookupTopic!.request_id));
      }),
    );
    const connection = await client(front.url).lookup('persistent://public/default/t');
    expect(connection.address.port).toBe(owner.port);
    // The redirect said authoritative: the next lookup says so too.
    expect(owner.received.find((x) => x.type === CommandType.LOOKUP)!.lookupTopic!.authoritative).toBe(true);
  });

  test('a failed lookup reports the server error; ServiceNotReady is marked retriable', async () => {
    const b = await broker(
      connectThen((command, reply) => {
        if (command.type === CommandType.LOOKUP) {
          reply({
            type: CommandType.LOOKUP_RESPONSE,
            lookupTopicResponse: { request_id: command.lookupTopic!.request_id, response: 2, error: 6, message: 'not ready' },
          });
        }
      }),
    );
    const error = await client(b.url)
      .lookup('t')
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PulsarServerError);
    expect((error as PulsarServerError).retriable).toBe(true);
    expect((error as Error).message).toBe('ServiceNotReady: not ready');
  });

  test('answers PING with PONG, and drops a broker that stays silent', async () => {
    const b = await broker(connectThen());
    const c = client(b.url, { keepAliveIntervalMs: 50 });
    const connection = await c.lookup('t').catch(() => null); // lookup times out: the broker never answers it
    expect(connection).toBeNull();
    // The client pinged while waiting, and closed the silent connection.
    expect(b.received.some((x) => x.type === CommandType.PING)).toBe(true);
  });

  test('pulsar+ssl:// connects over TLS, trusting the CA it is given', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sheaf-tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    const key = readFileSync(join(dir, 'key.pem'), 'utf8');
    const cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
    const b = await broker(
      connectThen((command, reply) => {
        if (command.type === CommandType.PARTITIONED_METADATA) {
          reply({
            type: CommandType.PARTITIONED_METADATA_RESPONSE,
            partitionMetadataResponse: { request_id: command.partitionMetadata!.request_id, partitions: 4 },
          });
        }
      }),
      { key, cert },
    );
    expect(b.url).toMatch(/^pulsar\+ssl:/);
    expect(await client(b.url, { tls: { ca: cert } }).partitions('t')).toBe(4);
    // Without the CA the broker's certificate is not trusted.
    await expect(client(b.url).partitions('t')).rejects.toThrow(/certificate/);

    // A lookup that names only a plaintext broker URL (the TLS one missing or empty) is refused, never followed.
    let plaintextConnections = 0;
    const plaintext = await broker(connectThen(() => undefined));
    for (const tlsUrl of [undefined, '']) {
      const looked = await broker(
        connectThen((command, reply) => {
          if (command.type !== CommandType.LOOKUP) return;
          reply({
            type: CommandType.LOOKUP_RESPONSE,
            lookupTopicResponse: {
              request_id: command.lookupTopic!.request_id,
              response: 1,
              brokerServiceUrl: plaintext.url,
              ...(tlsUrl === undefined ? {} : { brokerServiceUrlTls: tlsUrl }),
              authoritative: true,
            },
          });
        }),
        { key, cert },
      );
      await expect(client(looked.url, { tls: { ca: cert } }).lookup('persistent://public/default/t')).rejects.toThrow(
        /refusing to fall back to plaintext/,
      );
    }
    plaintextConnections = plaintext.received.filter((c) => c.type === CommandType.CONNECT).length;
    expect(plaintextConnections).toBe(0);
  });

  test('service URLs: defaults, several hosts, and a clear error for a bad one', () => {
    expect(parseServiceUrl('pulsar://a')).toEqual([{ url: 'pulsar://a:6650', host: 'a', port: 6650, tls: false }]);
    expect(parseServiceUrl('pulsar+ssl://a:1,b').map((x) => x.url)).toEqual(['pulsar+ssl://a:1', 'pulsar+ssl://b:6651']);
    expect(() => parseServiceUrl('http://a:8080')).toThrow(/must look like pulsar:\/\/host:6650/);
  });
});
