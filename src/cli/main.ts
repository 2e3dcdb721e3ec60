#!/usr/bin/env node
/**
 * The `sheaf` command: `worker`, `setup`, `dispatch`, `dlq list|replay|purge`, `demo`.
 * Exit status: see exit-codes.ts (0 ok, 1 failure, 2 bad arguments or configuration).
 */
import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { positiveInt } from './arguments.js';
import { pino } from 'pino';
import { runDemo } from '../demo/run-demo.js';
import { ConfigError, ServiceDefinitionError, SheafError } from '../errors.js';
import { PulsarTransport } from '../transport/pulsar/pulsar-transport.js';
import { dispatchCommand } from './dispatch-command.js';
import { dlqCommand } from './dlq-command.js';
import { jobCommand } from './job-command.js';
import { ExitCode } from './exit-codes.js';
import { failureLine } from './failure-line.js';
import { setupCommand } from './setup-command.js';
import { workerCommand } from './worker-command.js';

/** The version in the package's own package.json (dist/cli/ → ../../package.json). */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

// Output piped into `head` and the like: stop quietly when the reader goes away.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(ExitCode.ok);
  throw error;
});

const program = new Command()
  .name('sheaf')
  .description('Sheaf: batched tasks for TypeScript on Apache Pulsar')
  .version(packageVersion(), '-V, --version', 'print the version')
  .showHelpAfterError()
  .exitOverride();

workerCommand(program);
setupCommand(program);
dispatchCommand(program);
dlqCommand(program);
jobCommand(program);

program
  .command('demo')
  .description('dispatch thousands of tasks over a few batch keys and show how they were batched (in-memory transport unless --pulsar)')
  .option('--tasks <n>', 'how many tasks to dispatch', positiveInt, 5000)
  .option('--pulsar <url>', 'run on a Pulsar broker instead, e.g. pulsar://localhost:6650')
  .option('--namespace <name>', 'with --pulsar: the namespace under tenant public (default: default)')
  .option('--through-service-url', 'with --pulsar: connect only to that URL (a single broker behind port mapping)')
  .action(async (options: { tasks: number; pulsar?: string; namespace?: string; throughServiceUrl?: boolean }) => {
    const transport = options.pulsar
      ? new PulsarTransport({
          brokerServiceUrl: options.pulsar,
          ...(options.namespace ? { namespace: options.namespace } : {}),
          connectThroughServiceUrl: options.throughServiceUrl ?? false,
          logger: pino({ level: 'warn' }),
        })
      : undefined;
    const result = await runDemo({ tasks: options.tasks, out: process.stdout, ...(transport ? { transport } : {}) });
    process.exitCode = result.ok ? ExitCode.ok : ExitCode.failure;
  });

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Help and version exit 0; usage errors were already printed by commander.
    process.exitCode = error.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
  } else if (error instanceof ConfigError || error instanceof ServiceDefinitionError) {
    process.stderr.write(`sheaf: ${error.message}\n`);
    process.exitCode = ExitCode.usage;
  } else if (error instanceof SheafError) {
    // A failure Sheaf names (a refused role, a broker that is gone): the reason and the fix, no stack.
    process.stderr.write(`sheaf: ${failureLine(error, process.argv.includes('--verbose'))}\n`);
    process.exitCode = ExitCode.failure;
  } else {
    // Anything else is a bug: its stack is what a report needs.
    process.stderr.write(`sheaf: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exitCode = ExitCode.failure;
  }
}
