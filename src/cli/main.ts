#!/usr/bin/env node
/**
 * The `sheaf` command.
 */
import 'reflect-metadata';
import { Command, InvalidArgumentError } from 'commander';
import { pino } from 'pino';
import { runDemo } from '../demo/run-demo.js';
import { PulsarTransport } from '../transport/pulsar/pulsar-transport.js';

function positiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer (got ${value})`);
    return n;
  };
}

const program = new Command().name('sheaf').description('Sheaf: batched tasks for TypeScript on Apache Pulsar').showHelpAfterError();

program
  .command('demo')
  .description('dispatch thousands of tasks over a few batch keys on the in-memory transport, and show how they were batched')
  .option('--tasks <n>', 'how many tasks to dispatch', positiveInt('--tasks'), 5000)
  .option('--pulsar <url>', 'run on a Pulsar broker instead, e.g. pulsar://localhost:6650')
  .option('--through-service-url', 'with --pulsar: connect only to that URL (a single broker behind port mapping)')
  .action(async (options: { tasks: number; pulsar?: string; throughServiceUrl?: boolean }) => {
    const transport = options.pulsar
      ? new PulsarTransport({
          brokerServiceUrl: options.pulsar,
          connectThroughServiceUrl: options.throughServiceUrl ?? false,
          logger: pino({ level: 'warn' }),
        })
      : undefined;
    const result = await runDemo({ tasks: options.tasks, out: process.stdout, ...(transport ? { transport } : {}) });
    process.exitCode = result.ok ? 0 : 1;
  });

await program.parseAsync(process.argv);
