/**
 * Drives the official Java client (test/interop/java/Interop.java) from the
 * interop tests: compiles it once against the Pulsar distribution's jars
 * (`scripts/pulsar.sh home` fetches the distribution when needed) and runs its
 * commands as child processes, reading one JSON line per message.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = new URL('../../', import.meta.url).pathname;
const source = `${root}test/interop/java/Interop.java`;

let classpath: Promise<string> | undefined;

/** The classpath of the built program: its classes, then the distribution's lib/*. */
export function javaClasspath(): Promise<string> {
  classpath ??= (async () => {
    const { stdout } = await run(`${root}scripts/pulsar.sh`, ['home'], { timeout: 600_000 });
    const home = stdout.trim();
    const hash = createHash('sha256').update(readFileSync(source)).update(home).digest('hex').slice(0, 12);
    const out = `${root}node_modules/.cache/sheaf-interop/${hash}`;
    if (!existsSync(`${out}/Interop.class`)) {
      mkdirSync(out, { recursive: true });
      await run('javac', ['-d', out, '-cp', `${home}/lib/*`, source], { timeout: 120_000 });
    }
    return `${out}:${home}/lib/*`;
  })();
  return classpath;
}

/** The Pulsar distribution's home (bin/pulsar-perf and friends). */
export async function pulsarHome(): Promise<string> {
  const cp = await javaClasspath();
  return cp.slice(cp.indexOf(':') + 1, -'/lib/*'.length);
}

export type JavaLine = Record<string, unknown>;

/** One running Java command: its JSON lines as they come, READY, and its end. */
export class JavaProcess {
  readonly lines: JavaLine[] = [];
  readonly finished: Promise<{ lines: JavaLine[]; done: string }>;
  private readonly ready: Promise<void>;
  private readonly child: ChildProcess;
  private stderr = '';

  constructor(args: string[], cp: string, timeoutMs: number) {
    this.child = spawn('java', ['-cp', cp, 'Interop', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-4000);
    });
    let markReady!: () => void;
    this.ready = new Promise((resolve) => (markReady = resolve));
    let done = '';
    const reader = createInterface({ input: this.child.stdout! });
    reader.on('line', (line) => {
      // The client's own log lines go to stdout too: keep ours only.
      if (line.startsWith('{')) this.lines.push(JSON.parse(line) as JavaLine);
      else if (line === 'READY') markReady();
      else if (line.startsWith('DONE')) done = line;
    });
    const killer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    this.finished = new Promise((resolve, reject) => {
      this.child.on('close', (code) => {
        clearTimeout(killer);
        if (code === 0 && done) resolve({ lines: this.lines, done });
        else reject(new Error(`java Interop ${args[0]} exited with ${code} (${done || 'no DONE'}):\n${this.stderr}`));
      });
    });
    this.finished.catch(() => undefined);
  }

  /** Resolves once a consumer has subscribed (or rejects if the process ends first). */
  whenReady(): Promise<void> {
    return Promise.race([this.ready, this.finished.then(() => undefined)]);
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

/** Starts `java Interop <command> key=value...`. */
export async function java(command: 'produce' | 'consume', options: Record<string, string | number | boolean>, timeoutMs = 120_000) {
  const args = [command, ...Object.entries(options).map(([k, v]) => `${k}=${String(v)}`)];
  return new JavaProcess(args, await javaClasspath(), timeoutMs);
}

/** The payload both sides build for message i: "m<i>;" repeated to `size` bytes (Interop.payload). */
export function payload(i: number, size: number): Buffer {
  const unit = Buffer.from(`m${i};`);
  const out = Buffer.allocUnsafe(size);
  for (let k = 0; k < size; k++) out[k] = unit[k % unit.length]!;
  return out;
}

export const sha = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
