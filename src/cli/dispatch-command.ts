import { InvalidArgumentError, type Command } from 'commander';
import { positiveInt, positiveNumber } from './arguments.js';
import type { TaskHandle } from '../client/task-handle.js';
import { TaskFailedError } from '../errors.js';
import { withClientSession } from './client-session.js';
import { ExitCode } from './exit-codes.js';
import { progressBar } from './progress.js';

interface DispatchOptions {
  config: string;
  args: unknown[];
  batchKey?: string;
  meta: Record<string, string>;
  tag: string[];
  wait?: boolean;
  count: number;
  timeout?: number;
}

export function dispatchCommand(program: Command): void {
  program
    .command('dispatch')
    .description('dispatch a task (or --count copies) to Service.method; with --wait, print each result as a JSON line')
    .argument('<target>', 'Service.method', parseTarget)
    .option('-c, --config <file>', 'the configuration file', './sheaf.yml')
    .option('--args <json>', 'the arguments, as a JSON array', parseArgs, [])
    .option('--batch-key <key>', 'the batch key (meta.batchKey)')
    .option('--meta <key=value>', 'task metadata, repeatable', collectMeta, {})
    .option('--tag <tag>', 'a task tag, repeatable', (v: string, all: string[]) => [...all, v], [])
    .option('--count <n>', 'dispatch this many copies', positiveInt, 1)
    .option('--wait', 'wait for the results and print them (always on with transport: inMemory)')
    .option('--timeout <seconds>', 'with --wait: give up after this long (the tasks stay queued)', positiveNumber)
    .addHelpText(
      'after',
      `
With transport: inMemory, the services of the file run inside this command, so the task is executed here.
Exit status: 0 dispatched (and, with --wait, succeeded), 1 a task failed or timed out, 2 bad arguments or configuration.

Example: sheaf dispatch -c sheaf.yml EmailService.send --args '["a@b.c","hi","body"]' --batch-key tenant-1 --wait`,
    )
    .action(async (target: { service: string; method: string }, options: DispatchOptions) => {
      process.exitCode = await dispatch(target, options);
    });
}

async function dispatch(target: { service: string; method: string }, options: DispatchOptions): Promise<number> {
  return withClientSession(options.config, async (client, embedded) => {
    const stub = client.service<Record<string, (...args: unknown[]) => Promise<unknown>>>(target.service, {
      meta: { ...options.meta, ...(options.batchKey === undefined ? {} : { batchKey: options.batchKey }) },
      tags: options.tag,
    });
    const bar = options.count > 1 ? progressBar('dispatched', options.count) : null;
    const handles: TaskHandle<unknown>[] = [];
    for (let i = 0; i < options.count; i++) {
      handles.push(await client.dispatch(stub)[target.method]!(...options.args));
      bar?.tick();
    }
    bar?.stop();
    if (!options.wait && !embedded) {
      for (const h of handles) process.stdout.write(`${h.id}\n`);
      return ExitCode.ok;
    }
    return await waitForResults(handles, options.timeout);
  });
}

async function waitForResults(handles: TaskHandle<unknown>[], timeoutSeconds: number | undefined): Promise<number> {
  const bar = handles.length > 1 ? progressBar('results', handles.length) : null;
  let failed = 0;
  const all = Promise.all(
    handles.map(async (h) => {
      try {
        const value = await h.result();
        process.stdout.write(`${JSON.stringify({ taskId: h.id, result: value ?? null })}\n`);
      } catch (error) {
        failed += 1;
        const message = error instanceof TaskFailedError ? error.message : (error as Error).message;
        process.stderr.write(`sheaf: ${message}\n`);
      } finally {
        bar?.tick();
      }
    }),
  );
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    if (timeoutSeconds !== undefined) timer = setTimeout(() => resolve('timeout'), timeoutSeconds * 1000);
  });
  const outcome = await Promise.race([all.then(() => 'done' as const), timedOut]);
  clearTimeout(timer);
  bar?.stop();
  if (outcome === 'timeout') {
    process.stderr.write(`sheaf: no result within ${timeoutSeconds} s for some tasks; they stay queued\n`);
    return ExitCode.failure;
  }
  return failed > 0 ? ExitCode.failure : ExitCode.ok;
}

function parseTarget(value: string): { service: string; method: string } {
  const match = /^([A-Za-z][A-Za-z0-9_-]*)\.([A-Za-z_$][\w$]*)$/.exec(value);
  if (!match) throw new InvalidArgumentError(`expected Service.method, e.g. EmailService.send (got ${JSON.stringify(value)})`);
  return { service: match[1]!, method: match[2]! };
}

function parseArgs(value: string): unknown[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (error) {
    throw new InvalidArgumentError(`--args must be a JSON array: ${(error as Error).message}`);
  }
  if (!Array.isArray(parsed)) throw new InvalidArgumentError(`--args must be a JSON array, e.g. '["a@b.c", 3]' (got ${value})`);
  return parsed;
}

function collectMeta(value: string, all: Record<string, string>): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`--meta takes key=value (got ${JSON.stringify(value)})`);
  return { ...all, [value.slice(0, eq)]: value.slice(eq + 1) };
}
