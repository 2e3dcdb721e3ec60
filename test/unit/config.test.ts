import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { createTransport, loadServices } from '../../src/config/from-config.js';
import { captureLogs, testLogger } from '../support/logger.js';
import { loadConfigFile, parseConfigText, parseWithEnvironment } from '../../src/config/load.js';
import { sheafJsonSchema } from '../../src/config/json-schema.js';
import { ConfigError, type ConfigIssue } from '../../src/errors.js';

const fixture = new URL('../fixtures/echo-service.mjs', import.meta.url).pathname;

function issuesOf(yaml: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfigText(yaml, '/etc/sheaf.yml', env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain('/etc/sheaf.yml');
    return (error as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error('expected a ConfigError');
}

describe('sheaf.yml', () => {
  test('${VAR} and ${VAR:-default} are replaced; an unset variable without default names its line', () => {
    const issues: ConfigIssue[] = [];
    const document = parseWithEnvironment(
      'a: ${A}\nb: ${B:-fallback}\nc: ${C:-x}\n# ${IGNORED}\nd: ${MISSING}\ne: "${A}"\nf: pre-${A}-post # ${ALSO_IGNORED}',
      { A: 'one', C: '' },
      issues,
    );
    expect(document.toJS()).toEqual({ a: 'one', b: 'fallback', c: 'x', d: '', e: 'one', f: 'pre-one-post' });
    expect(issues).toEqual([
      { path: 'line 5', message: '${MISSING} is not set; set MISSING in the environment, or give a default: ${MISSING:-value}' },
    ]);
  });

  test('an environment value is only ever a value: newlines and "key: value" in it add no keys', () => {
    const hostile = 'x\n  rejectUnauthorized: false\ny: z';
    const issues: ConfigIssue[] = [];
    const document = parseWithEnvironment('pulsar:\n  tls: { caFile: ${CA} }\n  token: ${TOKEN}\n', { CA: hostile, TOKEN: 'a: b' }, issues);
    expect(issues).toEqual([]);
    expect(document.toJS()).toEqual({ pulsar: { tls: { caFile: hostile }, token: 'a: b' } });
  });

  test('numbers can come from the environment', () => {
    const loaded = parseConfigText(
      `services:\n  - name: Echo\n    executor: { module: x.js, export: X, concurrency: \${CONC:-3}, batch: { maxMessages: \${MAX} } }`,
      '/etc/sheaf.yml',
      { MAX: '7' },
    );
    expect(loaded.executors.get('Echo')).toMatchObject({ concurrency: 3, batch: { maxMessages: 7, maxSeconds: 1 }, maxUnacked: 42 });
  });

  test('a secret is never echoed in a config error, nor inside a value that holds one', () => {
    const token = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3b3JrZXIifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ';
    const messages = [
      ...issuesOf(`transport: pulsar\npulsar:\n  brokerServiceUrl: pulsar://h:6650\n  authentication: { token: 7 }\n`),
      ...issuesOf(`transport: pulsar\npulsar:\n  brokerServiceUrl: pulsar://h:6650\n  authentication: { token: [${token}] }\n`),
      ...issuesOf(`transport: pulsar\npulsar: [ { authentication: { token: ${token} } } ]\n`),
    ].join('\n');
    expect(messages).toMatch(/pulsar\.authentication\.token: .*not shown: it is secret/);
    expect(messages).not.toContain(token.slice(0, 12));
    expect(messages).not.toContain('7)');
  });

  test('every problem is reported at once, by path, with what was given', () => {
    const issues = issuesOf(`
transport: kafka
logs: { level: loud }
services:
  - name: Echo
    executor:
      module: x.js
      export: X
      concurrency: 0
      batch: { maxMessages: 0, maxSecnds: 1 }
`);
    expect(issues).toEqual(
      expect.arrayContaining([
        'transport: must be inMemory or pulsar (got "kafka")',
        expect.stringMatching(/^logs\.level: must be one of trace, debug, info, warn, error, fatal, silent \(got "loud"\)/),
        'services[0].executor.concurrency: must be a positive integer (got 0)',
        'services[0].executor.batch.maxMessages: must be a positive integer (got 0)',
        expect.stringMatching(/^services\[0\]\.executor\.batch\.maxSecnds: unknown key; did you mean 'maxSeconds'\?/),
      ]),
    );
    expect(issues).toHaveLength(5);
  });

  test('cross-checks: pulsar settings for transport: pulsar, unique services, the in-flight bound', () => {
    expect(issuesOf('transport: pulsar')).toEqual(['pulsar: is required with transport: pulsar (at least pulsar.brokerServiceUrl)']);
    const issues = issuesOf(`
services:
  - name: Echo
    executor: { module: x.js, export: X, concurrency: 10, maxUnacked: 50, batch: { maxMessages: 10 } }
  - name: Echo
`);
    expect(issues).toEqual([
      'services[0].executor.maxUnacked: must be at least concurrency × batch.maxMessages = 10 × 10 = 100 (got 50); otherwise batches can never fill. Raise maxUnacked, or lower concurrency or batch.maxMessages',
      "services[1].name: duplicates services[0].name 'Echo'; each service is declared once",
    ]);
  });

  test('token and tokenFile together, and a tls block on a pulsar:// URL, are config errors that name the fix', () => {
    const issues = issuesOf(
      `transport: pulsar\npulsar:\n  brokerServiceUrl: pulsar://broker:6650\n  authentication: { token: t, tokenFile: /run/t }\n  tls: { caFile: ca.pem }\n`,
    );
    expect(issues).toEqual([
      'pulsar.authentication: has both token and tokenFile; keep one (tokenFile is re-read at every reconnection)',
      'pulsar.tls: needs a pulsar+ssl:// brokerServiceUrl (got pulsar://...); use pulsar+ssl://host:6651, or remove tls',
    ]);
  });

  test('a tokenFile that is missing or empty fails when the config loads, naming the file; no connection is tried', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sheaf-config-'));
    const file = join(dir, 'sheaf.yml');
    await writeFile(join(dir, 'empty-token'), '\n');
    const messages: string[] = [];
    for (const tokenFile of ['./no-such-token', './empty-token']) {
      // Port 9 (discard): were a connection tried, it would be refused or time out, not give these errors.
      await writeFile(
        file,
        `transport: pulsar\npulsar:\n  brokerServiceUrl: pulsar://127.0.0.1:9\n  authentication: { tokenFile: ${tokenFile} }\n`,
      );
      const error = await createTransport(await loadConfigFile(file), testLogger).catch((e: unknown) => e as ConfigError);
      expect(error).toBeInstanceOf(ConfigError);
      messages.push(...(error as ConfigError).issues.map((i) => `${i.path}: ${i.message}`));
    }
    expect(messages).toEqual([
      expect.stringMatching(new RegExp(`^pulsar\\.authentication\\.tokenFile: cannot read ${join(dir, 'no-such-token')}: ENOENT`)),
      `pulsar.authentication.tokenFile: ${join(dir, 'empty-token')} is empty; it must hold the token`,
    ]);
  });

  test('a token over pulsar:// to a host that is not this machine is warned about, without the token; on loopback it is not', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sheaf-config-'));
    const file = join(dir, 'sheaf.yml');
    const said: string[] = [];
    for (const host of ['broker.internal.example', '127.0.0.1', 'localhost']) {
      await writeFile(
        file,
        `transport: pulsar\npulsar:\n  brokerServiceUrl: pulsar://${host}:6650\n  authentication: { token: secret-token-text }\n`,
      );
      const { logger, lines } = captureLogs();
      // Building the transport connects to nothing: the warning is said when the config is turned into one.
      const transport = await createTransport(await loadConfigFile(file), logger);
      await transport.close();
      said.push(lines());
    }
    expect(said[0]).toMatch(/the token is sent unencrypted \(pulsar:\/\/ to a host that is not this machine\); use pulsar\+ssl:\/\//);
    expect(said[0]).not.toContain('secret-token-text');
    expect(said.slice(1)).toEqual(['', '']);
  });

  test('YAML syntax errors name their line', () => {
    expect(issuesOf('services:\n  - name: [unclosed\n')[0]).toMatch(/^line \d: YAML: /);
  });

  test('a module whose own import fails is reported with that error, not as a missing file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sheaf-config-'));
    await writeFile(join(dir, 'service.mjs'), "import 'a-package-that-is-not-installed';\nexport class S {}\n");
    const file = join(dir, 'sheaf.yml');
    await writeFile(file, 'services:\n  - name: S\n    executor: { module: ./service.mjs, export: S }\n');
    const error = await loadServices(await loadConfigFile(file)).catch((e: unknown) => e as ConfigError);
    expect(error).toBeInstanceOf(ConfigError);
    const [message] = (error as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
    expect(message).toMatch(
      /^services\[0\]\.executor\.module: cannot load .*service\.mjs: Cannot find package 'a-package-that-is-not-installed'/,
    );
    expect(message).not.toContain('no such file');
  });

  test('a module that cannot be found names the path it tried; a missing export lists the exports', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sheaf-config-'));
    const file = join(dir, 'sheaf.yml');
    await writeFile(
      file,
      `services:
  - name: Missing
    executor: { module: ./nowhere.js, export: X }
  - name: WrongExport
    executor: { module: ${fixture}, export: EchoServise }
  - name: NotAClass
    executor: { module: ${fixture}, export: notAClass }
`,
    );
    const error = await loadServices(await loadConfigFile(file)).catch((e: unknown) => e as ConfigError);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).issues.map((i) => `${i.path}: ${i.message}`)).toEqual([
      `services[0].executor.module: cannot load ${join(dir, 'nowhere.js')}: no such file (module paths are resolved from ${dir})`,
      `services[1].executor.export: ${fixture} has no exported class 'EchoServise' (it exports: EchoService)`,
      `services[2].executor.export: ${fixture} has no exported class 'notAClass' (it exports: EchoService)`,
    ]);
  });

  test('the example configuration is valid', async () => {
    const loaded = await loadConfigFile(new URL('../../config/sheaf.example.yml', import.meta.url).pathname, {});
    expect(loaded.config.transport).toBe('pulsar');
    expect(loaded.executors.get('EmailService')).toMatchObject({
      concurrency: 10,
      timeoutMs: 30_000,
      batch: { maxMessages: 100, maxSeconds: 0.5 },
    });
  });

  test('the shipped JSON Schema is the one the code generates (run `npm run schema` after changing the schema)', () => {
    const shipped = JSON.parse(readFileSync(new URL('../../config/sheaf.schema.json', import.meta.url), 'utf8')) as unknown;
    expect(shipped).toEqual(JSON.parse(JSON.stringify(sheafJsonSchema())));
  });
});
