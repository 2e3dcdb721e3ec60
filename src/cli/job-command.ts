/**
 * `sheaf job run|status|watch`: a job from a file of items (one task per
 * line), and a job followed from anywhere. Progress goes to stderr; stdout
 * carries the job id and the final status as JSON lines.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { SheafClient } from '../client/client.js';
import type { Job } from '../client/job.js';
import { setupFromConfigFile } from '../config/from-config.js';
import { ConfigError, JobStoppedError, SheafError } from '../errors.js';
import { MAX_JOBS_LISTED, type JobCallbacks, type JobStatus } from '../wire/job-events.js';
import { intUpTo, positiveInt } from './arguments.js';
import { withClientSession } from './client-session.js';
import { ExitCode } from './exit-codes.js';
import { progressBar } from './progress.js';
import { table } from '../util/text-table.js';

interface RunOptions {
  config: string;
  service: string;
  method: string;
  input: string;
  batchKeyField?: string;
  name?: string;
  inFlight: number;
  timeout?: number;
  resume?: string;
  stopOnError?: boolean;
  callbacksService?: string;
  onSuccess?: string;
  onComplete?: string;
  onItemError?: string;
}

/** A line of the input that is not a task: named by file and line. */
class InputLineError extends SheafError {
  override name = 'InputLineError';
  constructor(
    readonly file: string,
    readonly line: number,
    message: string,
  ) {
    super(`${file}:${line}: ${message}`);
  }
}

export function jobCommand(program: Command): void {
  const job = program.command('job').description('jobs: many tasks as one unit (docs/jobs.md)');
  job
    .command('run')
    .description('dispatch one task per line of an NDJSON file as a job, seal it, and follow it to the end')
    .option('-c, --config <file>', 'the configuration file', './sheaf.yml')
    .requiredOption('--service <name>', 'the service the tasks go to')
    .requiredOption('--method <name>', 'the task method; each line (a JSON value) is its one argument')
    .requiredOption('--input <file>', 'the items, one JSON value per line (NDJSON); empty lines are skipped')
    .option('--batch-key-field <field>', "the batch key of each task: this field of the line's object")
    .option('--name <name>', 'the job name, shown in its status')
    .option('--in-flight <n>', 'dispatches under way at once', positiveInt, 1000)
    .option('--timeout <seconds>', 'stop following after this long (the job goes on)', positiveInt)
    .option('--callbacks-service <name>', 'the service the job callbacks below are methods of')
    .option('--on-success <method>', 'called once the job finished with nothing failed (with its status)')
    .option('--on-complete <method>', 'called once the job finished, whatever happened (with its status)')
    .option('--on-item-error <method>', 'called once per line whose task failed for good (with the item and the error)')
    .option('--stop-on-error', 'stop the job at its first failed task: the rest is cancelled, not run (continueOnError: false)')
    .option('--resume <jobId>', 'continue a job this command started and that stopped (Ctrl-C, a crash): same file, same options')
    .addHelpText(
      'after',
      `
Prints the job id first, then the final status as a JSON line. Exit status: 0 every task succeeded,
1 some failed or a wait ran out, 2 bad arguments, configuration or input, 130 interrupted.

A job that stopped before all its lines were dispatched continues with --resume <jobId>: lines the
broker holds as dispatched are skipped, and none is dispatched twice (Pulsar, with deduplication on
the namespace: sheaf setup turns it on). Resume within 6 hours (the broker's default memory of it).

Example: sheaf job run -c sheaf.yml --service Rows --method insert --input rows.ndjson --batch-key-field tenant`,
    )
    .action(async (options: RunOptions) => {
      process.exitCode = await run(options);
    });
  job
    .command('status')
    .description("print a job's status as a JSON line")
    .argument('<jobId>', 'the job id `sheaf job run` or client.job() gave')
    .option('-c, --config <file>', 'the configuration file', './sheaf.yml')
    .action(async (jobId: string, options: { config: string }) => {
      process.exitCode = await follow(jobId, options.config, false, undefined);
    });
  job
    .command('list')
    .description('the jobs the job tracker holds (running, or finished within jobs.retentionHours), newest first')
    .option('-c, --config <file>', 'the configuration file', './sheaf.yml')
    .option('--limit <n>', `at most this many jobs (up to ${MAX_JOBS_LISTED})`, intUpTo(MAX_JOBS_LISTED), 20)
    .option('--json', 'one JSON status per line instead of a table')
    .action(async (options: { config: string; limit: number; json?: boolean }) => {
      process.exitCode = await list(options);
    });
  job
    .command('watch')
    .description('follow a job with a progress bar until it finishes; print its final status')
    .argument('<jobId>', 'the job id')
    .option('-c, --config <file>', 'the configuration file', './sheaf.yml')
    .option('--timeout <seconds>', 'stop following after this long', positiveInt)
    .action(async (jobId: string, options: { config: string; timeout?: number }) => {
      process.exitCode = await follow(jobId, options.config, true, options.timeout);
    });
}

async function run(options: RunOptions): Promise<number> {
  const lines = await countLines(options.input);
  try {
    // With transport: inMemory the file's services (and a job tracker) run in this process.
    return await withClientSession(options.config, async (client, embedded) => {
      if (options.resume !== undefined && embedded) {
        throw new ConfigError(
          [{ path: '--resume', message: 'an in-memory job lives in the process that ran it; resume jobs with transport: pulsar' }],
          { source: 'sheaf job run' },
        );
      }
      const stub = client.service<Record<string, (arg: unknown) => Promise<unknown>>>(options.service);
      const callbacks = callbacksOf(options);
      const job =
        options.resume !== undefined
          ? await client.resumeJob(options.resume, callbacks ? { callbacks } : {})
          : await client.job({
              ...(options.name !== undefined ? { name: options.name } : {}),
              ...(callbacks ? { callbacks } : {}),
              resumable: true,
              continueOnError: !(options.stopOnError ?? false),
            });
      process.stdout.write(`${JSON.stringify({ jobId: job.jobId })}\n`);
      const stopHint = onInterrupt(job.jobId);
      if (options.resume !== undefined) process.stderr.write(`sheaf: resuming job ${job.jobId} after ${job.resumedAt} dispatched items\n`);
      const dispatchedBar = progressBar('dispatched', lines);
      dispatchedBar.tick(Math.min(job.resumedAt, lines));
      try {
        await addAllUnlessStopped(job, () =>
          job.addAll(
            items(options.input, options.batchKeyField),
            ({ value, batchKey }) =>
              job.dispatch(stub, { fireAndForget: true, ...(batchKey !== undefined ? { batchKey } : {}) })[options.method]!(value),
            { inFlight: options.inFlight, onProgress: () => dispatchedBar.tick() },
          ),
        );
      } finally {
        dispatchedBar.stop();
      }
      if (job.deduplicated > 0) {
        process.stderr.write(`sheaf: ${job.deduplicated} items the broker had stored before the resume were not dispatched again\n`);
      }
      await job.seal();
      stopHint();
      return await watchToEnd(job, job.dispatched, options.timeout);
    });
  } catch (error) {
    if (error instanceof InputLineError) {
      process.stderr.write(`sheaf: ${error.message}\n`);
      return ExitCode.usage;
    }
    throw error;
  }
}

/** The job callbacks the options name; a method without `--callbacks-service` is a usage error naming the flag. */
function callbacksOf(options: RunOptions): JobCallbacks | undefined {
  const methods = { onSuccess: options.onSuccess, onComplete: options.onComplete, onItemError: options.onItemError };
  const named = Object.entries(methods).filter(([, method]) => method !== undefined);
  if (options.callbacksService === undefined) {
    if (named.length === 0) return undefined;
    throw new ConfigError(
      [
        {
          path: '--callbacks-service',
          message: `is needed with ${named.map(([key]) => `--${kebab(key)}`).join(', ')}: the service whose methods they are`,
        },
      ],
      {
        source: 'sheaf job run',
      },
    );
  }
  return { service: options.callbacksService, ...Object.fromEntries(named) };
}

const kebab = (key: string): string => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/**
 * Dispatches, and when the job stops at its first failure
 * (`continueOnError: false`) says so and ends there: the job is sealed and
 * followed to its final status like any other.
 */
async function addAllUnlessStopped(job: Job, addAll: () => Promise<number>): Promise<void> {
  try {
    await addAll();
  } catch (error) {
    if (!(error instanceof JobStoppedError)) throw error;
    process.stderr.write(`sheaf: job ${job.jobId} stopped at its first failed task; the rest of the input is not dispatched\n`);
  }
}

/**
 * Ctrl-C while a job is dispatched: says how to continue it, and exits 130
 * (the broker keeps what was dispatched; a resume sends the rest). Returns
 * the function that removes the handler once the job is sealed.
 */
function onInterrupt(jobId: string): () => void {
  const handler = (): void => {
    process.stderr.write(`\nsheaf: interrupted; continue the job with the same command and --resume ${jobId}\n`);
    process.exit(ExitCode.interrupted);
  };
  process.once('SIGINT', handler);
  return () => process.off('SIGINT', handler);
}

async function list(options: { config: string; limit: number; json?: boolean }): Promise<number> {
  return withAttachedClient(options.config, async (client) => {
    const statuses = await client.listJobs({ limit: options.limit });
    if (options.json) {
      for (const status of statuses) process.stdout.write(`${JSON.stringify(status)}\n`);
      return ExitCode.ok;
    }
    if (statuses.length === 0) {
      process.stdout.write('no jobs (none running, and none finished within jobs.retentionHours)\n');
      return ExitCode.ok;
    }
    const rows = statuses.map((s) => [
      s.jobId,
      s.name ?? '',
      s.stopped ? 'stopped' : s.finishedAt !== null ? 'finished' : s.sealed ? 'running' : 'open',
      s.total === null ? '-' : String(s.total),
      String(s.succeeded),
      String(s.failed),
      String(s.deadLettered),
      s.percent === null ? '-' : `${s.percent}%`,
      new Date(s.startedAt).toISOString(),
    ]);
    process.stdout.write(
      `${table([['job', 'name', 'state', 'total', 'succeeded', 'failed', 'dead-lettered', 'done', 'started'], ...rows])}\n`,
    );
    return ExitCode.ok;
  });
}

async function follow(jobId: string, config: string, watch: boolean, timeoutSeconds: number | undefined): Promise<number> {
  return withAttachedClient(config, async (client) => {
    const job = await client.attachJob(jobId);
    if (!watch) {
      process.stdout.write(`${JSON.stringify(await job.status())}\n`);
      return ExitCode.ok;
    }
    const first = await job.status();
    return await watchToEnd(job, first.total ?? 0, timeoutSeconds);
  });
}

/** A client on the file's transport, for commands that follow jobs run elsewhere (never in memory: those live in their process). */
async function withAttachedClient(config: string, use: (client: SheafClient) => Promise<number>): Promise<number> {
  const setup = await setupFromConfigFile(config, { logStream: process.stderr });
  if (setup.transport.kind === 'inMemory') {
    await setup.close();
    throw new ConfigError(
      [{ path: 'transport', message: 'an in-memory job lives in the process that ran it; follow jobs with transport: pulsar' }],
      { source: setup.loaded.path },
    );
  }
  const client = await SheafClient.connect({ transport: setup.transport, logger: setup.logger });
  try {
    return await use(client);
  } finally {
    await client.close();
    await setup.close();
  }
}

/** A bar of settled tasks from the statuses the tracker publishes, then the final status on stdout. */
async function watchToEnd(job: Job, total: number, timeoutSeconds: number | undefined): Promise<number> {
  const bar = progressBar('settled', total);
  let shown = 0;
  const show = (status: JobStatus): void => {
    const settled = status.succeeded + status.failed + status.deadLettered;
    if (settled > shown) bar.tick(settled - shown);
    shown = settled;
  };
  const timer = setInterval(() => {
    job.status().then(show, () => undefined);
  }, 1000);
  try {
    const final = await job.done(timeoutSeconds === undefined ? {} : { timeoutMs: timeoutSeconds * 1000 });
    show(final);
    bar.stop();
    process.stdout.write(`${JSON.stringify(final)}\n`);
    return final.failed + final.deadLettered === 0 ? ExitCode.ok : ExitCode.failure;
  } finally {
    clearInterval(timer);
    bar.stop();
  }
}

/** The input's items, one per non-empty line, read as they are needed. */
async function* items(file: string, batchKeyField: string | undefined): AsyncGenerator<{ value: unknown; batchKey?: string }> {
  const reader = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  let line = 0;
  for await (const text of reader) {
    line += 1;
    if (text.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new InputLineError(file, line, `not JSON (${(error as Error).message}); each line is one JSON value`);
    }
    if (batchKeyField === undefined) {
      yield { value };
      continue;
    }
    const key = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[batchKeyField] : undefined;
    if (typeof key !== 'string' && typeof key !== 'number') {
      throw new InputLineError(file, line, `has no string or number field "${batchKeyField}" for --batch-key-field`);
    }
    yield { value, batchKey: String(key) };
  }
}

/** Lines in the file, for the bar's total; a file that cannot be read is named. */
async function countLines(file: string): Promise<number> {
  let isFile: boolean;
  try {
    isFile = (await stat(file)).isFile();
  } catch (error) {
    throw new ConfigError([{ path: '--input', message: `${file} cannot be read: ${(error as Error).message}` }], {
      source: 'sheaf job run',
    });
  }
  if (!isFile) throw new ConfigError([{ path: '--input', message: `${file} is not a file` }], { source: 'sheaf job run' });
  let count = 0;
  for await (const text of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) if (text.trim() !== '') count += 1;
  return count;
}
