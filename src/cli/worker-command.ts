import type { Command } from 'commander';
import { SheafWorker } from '../worker/worker.js';
import { ExitCode } from './exit-codes.js';
import { closeWithin, failureLine } from './failure-line.js';

export function workerCommand(program: Command): void {
  program
    .command('worker')
    .description('run the services of a sheaf.yml until SIGINT or SIGTERM, then drain: open batches run and settle before exit')
    .option('-c, --config <file>', 'the configuration file', './sheaf.yml')
    .option('--verbose', 'print stacks with errors')
    .addHelpText(
      'after',
      '\nExit status: 0 drained and closed, 1 the worker failed or could not start, 2 bad configuration, 130 forced by a second signal.',
    )
    .action(async (options: { config: string; verbose?: boolean }) => {
      const worker = await SheafWorker.fromConfigFile(options.config, { verboseErrors: options.verbose ?? false });
      if (worker.transportKind === 'inMemory') {
        process.stderr.write(
          'sheaf: transport inMemory: only this process can reach this worker; use transport: pulsar to serve other processes\n',
        );
      }
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) {
          process.stderr.write(`sheaf: ${signal} again; exiting without draining (unsettled tasks are redelivered)\n`);
          process.exit(ExitCode.interrupted);
        }
        stopping = true;
        process.stderr.write(`sheaf: ${signal}; draining (send it again to exit at once)\n`);
        worker.close().then(
          () => process.exit(ExitCode.ok),
          (error: unknown) => {
            process.stderr.write(`sheaf: drain failed: ${(error as Error).message}\n`);
            process.exit(ExitCode.failure);
          },
        );
      };
      process.on('SIGINT', () => stop('SIGINT'));
      process.on('SIGTERM', () => stop('SIGTERM'));
      worker.events.on('failed', (error) => {
        process.stderr.write(`sheaf: the worker failed: ${(error as Error)?.message ?? String(error)}\n`);
        void worker.close().finally(() => process.exit(ExitCode.failure));
      });
      try {
        await worker.start();
      } catch (error) {
        // Whatever the worker opened (connections, timers) would hold the process: close it, within a bound, and exit.
        process.stderr.write(`sheaf: the worker could not start: ${failureLine(error, options.verbose ?? false)}\n`);
        await closeWithin(() => worker.close(), 5000);
        process.exit(ExitCode.failure);
      }
      // A worker runs until a signal. With the in-memory transport no socket holds the
      // event loop open, so hold it here until the drain ends the process.
      setInterval(() => undefined, 1 << 30);
    });
}
