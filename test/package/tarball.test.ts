/**
 * The README's TypeScript setup, done as a new user does it: pack the
 * library, install the tarball into a fresh app, write a `.ts` service with
 * `@Batch`, run it with `sheaf worker` under tsx, dispatch from another
 * process, and get the results.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { freshNamespace, noPulsar, pulsarUrl } from '../support/pulsar.js';
import { spawn } from 'node:child_process';

const run = promisify(execFile);
const root = new URL('../../', import.meta.url).pathname;

describe.skipIf(noPulsar())('the packed tarball in a fresh TypeScript app', () => {
  let app: string;
  const stops: Array<() => void> = [];
  afterAll(() => stops.forEach((stop) => stop()));

  beforeAll(async () => {
    app = await mkdtemp(join(tmpdir(), 'sheaf-app-'));
    const { stdout } = await run('npm', ['pack', '--silent', '--pack-destination', app], { cwd: root });
    const tarball = join(app, stdout.trim().split('\n').pop()!);
    const ours = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'sheaf-user-app', private: true, type: 'module' }, null, 2));
    await writeFile(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          experimentalDecorators: true,
          emitDecoratorMetadata: true,
          skipLibCheck: true,
        },
      }),
    );
    await run(
      'npm',
      [
        'install',
        '--no-audit',
        '--no-fund',
        '--prefer-offline',
        tarball,
        'reflect-metadata',
        `tsx@${ours.devDependencies.tsx}`,
        `typescript@${ours.devDependencies.typescript}`,
      ],
      { cwd: app, timeout: 300_000 },
    );
    await mkdir(join(app, 'src'));
    await writeFile(
      join(app, 'src', 'email-service.ts'),
      `import 'reflect-metadata';
import { Batch, Params, Task } from 'sheaf';

export class EmailServiceImpl {
  // tsx does not emit parameter types, so @Params lists them (as the README says).
  @Params(String, String)
  send(_to: string, _subject: string): string {
    throw new Error('the batch method runs every task');
  }

  @Batch('send')
  async sendMany(tasks: Map<string, [string, string]>): Promise<Map<string, string>> {
    const { batchKey, size } = Task.batch();
    return new Map([...tasks].map(([id, [to, subject]]) => [id, \`\${subject} to \${to} (\${batchKey}, batch of \${size})\`]));
  }
}
`,
    );
    await writeFile(
      join(app, 'sheaf.yml'),
      `name: email-worker
transport: pulsar
pulsar:
  brokerServiceUrl: ${pulsarUrl()}
  namespace: ${await freshNamespace()}
logs: { level: info, pretty: false }
services:
  - name: EmailService
    executor:
      module: ./src/email-service.ts
      export: EmailServiceImpl
      batch: { maxMessages: 5, maxSeconds: 2 }
`,
    );
  }, 400_000);

  test('type-checks, runs with sheaf worker under tsx, and answers a dispatch from another process', async () => {
    // The service type-checks against the installed package's types.
    await run(join(app, 'node_modules/.bin/tsc'), ['--noEmit', '-p', '.'], { cwd: app });
    const worker = spawn(join(app, 'node_modules/.bin/sheaf'), ['worker'], {
      cwd: app,
      env: { ...process.env, NODE_OPTIONS: '--import tsx' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    stops.push(() => worker.kill('SIGKILL'));
    let out = '';
    await new Promise<void>((resolve, reject) => {
      worker.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('worker ready')) resolve();
      });
      worker.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
      worker.on('exit', (code) => reject(new Error(`the worker exited with ${code}:\n${out}`)));
    });
    const { stdout } = await run(
      join(app, 'node_modules/.bin/sheaf'),
      [
        'dispatch',
        'EmailService.send',
        '--args',
        '["a@b.c","hello"]',
        '--batch-key',
        'tenant-1',
        '--count',
        '5',
        '--wait',
        '--timeout',
        '60',
      ],
      { cwd: app },
    );
    const results = stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { result?: string });
    expect(results).toHaveLength(5);
    for (const r of results) expect(r.result).toBe('hello to a@b.c (tenant-1, batch of 5)');
    worker.kill('SIGTERM');
    await new Promise((resolve) => worker.once('close', resolve));
  }, 120_000);
});
