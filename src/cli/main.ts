#!/usr/bin/env node
/**
 * The `sheaf` command.
 */
import 'reflect-metadata';
import { Command, InvalidArgumentError } from 'commander';
import { runDemo } from '../demo/run-demo.js';

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
  .action(async (options: { tasks: number }) => {
    const result = await runDemo({ tasks: options.tasks, out: process.stdout });
    process.exitCode = result.ok ? 0 : 1;
  });

await program.parseAsync(process.argv);
