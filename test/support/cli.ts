import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const cli = new URL('../../dist/cli/main.js', import.meta.url).pathname;
export const echoServiceModule = new URL('../fixtures/echo-service.mjs', import.meta.url).pathname;

/** A running `sheaf` process: its output so far, a wait for a pattern in it, and its exit. */
export interface CliProcess {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves once stdout or stderr (together) match; rejects if the process exits first. */
  waitFor(pattern: RegExp): Promise<void>;
  readonly exited: Promise<number>;
}

export function startCli(args: string[], env: NodeJS.ProcessEnv = {}, options: { cwd?: string } = {}): CliProcess {
  const child = spawn(process.execPath, [cli, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.cwd ? { cwd: options.cwd } : {}),
  });
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  const changed = (): void => listeners.forEach((l) => l());
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    changed();
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    err += chunk.toString();
    changed();
  });
  const exited = new Promise<number>((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : -1))));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(pattern) {
      return new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (pattern.test(out + err)) {
            listeners.delete(check);
            resolve();
          }
        };
        listeners.add(check);
        check();
        void exited.then((code) => {
          if (listeners.has(check)) reject(new Error(`sheaf exited with ${code} before printing ${pattern}:\n${out}\n${err}`));
        });
      });
    },
  };
}

/** The lines a command wrote to stderr as its own (`sheaf: …`), without log lines. */
export const sheafLines = (stderr: string): string[] => stderr.split('\n').filter((line) => line.startsWith('sheaf:'));

/** Runs `sheaf` to completion. */
export async function runCli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  options: { cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = startCli(args, env, options);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

/** Writes a sheaf.yml for the echo fixture service into a new folder; returns its path. */
export async function writeEchoConfig(options: {
  transport: 'inMemory' | 'pulsar';
  pulsar?: { brokerServiceUrl: string; namespace: string; connectThroughServiceUrl?: boolean; tenant?: string; adminUrl?: string };
  executor?: string;
}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sheaf-cli-'));
  const pulsar = options.pulsar
    ? `pulsar:
  brokerServiceUrl: ${options.pulsar.brokerServiceUrl}
${options.pulsar.tenant ? `  tenant: ${options.pulsar.tenant}\n` : ''}${options.pulsar.adminUrl ? `  adminUrl: ${options.pulsar.adminUrl}\n` : ''}  namespace: ${options.pulsar.namespace}
  connectThroughServiceUrl: ${options.pulsar.connectThroughServiceUrl ?? false}
  nackRedeliveryDelayMs: 100
`
    : '';
  const file = join(dir, 'sheaf.yml');
  await writeFile(
    file,
    `name: cli-test
transport: ${options.transport}
${pulsar}logs: { level: info, pretty: false }
services:
  - name: Echo
    executor:
      module: ${echoServiceModule}
      export: EchoService
      ${options.executor ?? 'batch: { maxMessages: 10, maxSeconds: 0.05 }'}
`,
  );
  return file;
}
