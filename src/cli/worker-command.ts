import { InvalidArgumentError, type Command } from 'commander';
import { SheafWorker } from '../worker/worker.js';
import { ExitCode } from './exit-codes.js';
import { closeWithin, failureLine } from './failure-line.js';
import { loadConfigFile } from '../config/load.js';
import { registerMetrics, startOpsServer, type OpsServer } from '../telemetry/ops-server.js';
import { ConfigError } from '../errors.js';
import { MAX_PROCESSES } from '../config/schema.js';
import { superviseWorkers } from './supervisor.js';

function processCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_PROCESSES) {
    throw new InvalidArgumentError(`'${value}' is not a number of processes (1-${MAX_PROCESSES})`);
  }
  return n;
}

interface WorkerCommandOptions {
  config: string;
  verbose?: boolean;
  metricsPort?: number;
  dashboard?: boolean;
  processes?: number;
}

function portNumber(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError(`'${value}' is not a port number (0-65535)`);
  return port;
}

export function workerCommand(program: Command): void {
  program
    .command('worker')
    .description('run the services of a sheaf.yml until SIGINT or SIGTERM, then drain: open batches run and settle before exit')
    .option('-c, --config <file>', 'the configuration file', './sheaf.yml')
    .option('--verbose', 'print stacks with errors')
    .option('--metrics-port <port>', 'serve /metrics, /healthz and /readyz on this port (0: any free port)', portNumber)
    .option('--dashboard', 'also serve the live dashboard at /dashboard on the metrics port')
    .option(
      '--processes <n>',
      'run n worker processes under one supervisor (pulsar only; process i serves metrics on port + i)',
      processCount,
    )
    .addHelpText(
      'after',
      '\nExit status: 0 drained and closed, 1 the worker failed or could not start, 2 bad configuration, 130 forced by a second signal.',
    )
    .action(async (options: WorkerCommandOptions) => {
      const { config } = await loadConfigFile(options.config);
      const processes = options.processes ?? config.processes ?? 1;
      if (processes > 1) {
        if ((config.transport ?? 'inMemory') !== 'pulsar') {
          throw new ConfigError(
            [
              {
                path: 'processes',
                message: `is ${processes}, but the in-memory transport reaches only its own process: use transport: pulsar, or run one process`,
              },
            ],
            { source: options.config },
          );
        }
        const args = ['-c', options.config, ...(options.verbose ? ['--verbose'] : []), ...(options.dashboard ? ['--dashboard'] : [])];
        const write = (line: string): void => void process.stderr.write(`${line}\n`);
        process.exitCode = await superviseWorkers({ processes, args, metricsPort: options.metricsPort ?? config.metrics?.port, write });
        return;
      }
      const worker = await SheafWorker.fromConfigFile(options.config, { verboseErrors: options.verbose ?? false });
      const settings = config.metrics;
      const port = options.metricsPort ?? settings?.port;
      let ops: OpsServer | null = null;
      if (port !== undefined) {
        // Before start(): the worker's instruments bind to the provider registered now.
        const { exporter } = registerMetrics();
        const dashboard = options.dashboard ?? settings?.dashboard ?? false;
        ops = await startOpsServer({ port, ...(settings?.host ? { host: settings.host } : {}), worker, exporter, dashboard });
        process.stderr.write(`sheaf: metrics and health on ${ops.url} (/metrics, /healthz, /readyz${dashboard ? ', /dashboard' : ''})\n`);
      }
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
          async () => {
            await ops?.close();
            process.exit(ExitCode.ok);
          },
          (error: unknown) => {
            process.stderr.write(`sheaf: drain failed: ${(error as Error).message}\n`);
            process.exit(ExitCode.failure);
          },
        );
      };
      if (process.env.SHEAF_WORKER_INDEX !== undefined && process.send) {
        // A child of `--processes`: Ctrl-C reaches the whole process group, and the
        // supervisor passes it on as SIGTERM; taking SIGINT too would count as a second signal.
        process.on('SIGINT', () => undefined);
        // The supervisor gone (killed): drain rather than work on unsupervised.
        process.on('disconnect', () => stop('supervisor gone'));
        process.channel?.unref();
      } else {
        process.on('SIGINT', () => stop('SIGINT'));
      }
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
