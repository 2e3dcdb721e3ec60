/**
 * `sheaf worker --processes N`: N worker processes under one supervisor, for
 * machines with more cores than one Node thread can use. Each child is a
 * plain `sheaf worker --processes 1` with its own connections and consumers;
 * the broker shares the tasks between them as between any competing workers.
 *
 * The supervisor's lifecycle:
 *
 *   running ──(SIGINT/SIGTERM)──→ draining ──(every child gone)──→ exit 0 if all drained
 *      │                              └──(the signal again)──→ passed on; children exit 130
 *      └──(a child exits on its own)──→ failing: the others drain, exit 1
 *
 * A child that exits on its own (it could not start, or its worker failed) is
 * not restarted here: the supervisor stops the others gracefully and exits 1
 * naming it, so the process manager above (systemd, Kubernetes) sees the
 * failure and restarts the whole, as it would a single worker. Restarting here
 * would hide a worker that fails again and again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { ExitCode } from './exit-codes.js';

export interface SupervisorOptions {
  readonly processes: number;
  /** `sheaf worker` arguments for every child (without `--processes` and `--metrics-port`). */
  readonly args: readonly string[];
  /** The metrics port: child i serves on port + i (0: each child on any free port). */
  readonly metricsPort: number | undefined;
  readonly write: (line: string) => void;
}

type SupervisorState = 'running' | 'draining' | 'failing';

/** Runs the children until they are all gone; resolves with the supervisor's exit code. */
export function superviseWorkers(options: SupervisorOptions): Promise<number> {
  const { processes, args, metricsPort, write } = options;
  const entry = process.argv[1]!;
  const children = new Map<number, ChildProcess>();
  let state: SupervisorState = 'running';
  let forced = false;
  const codes: number[] = [];

  const stopAll = (signal: NodeJS.Signals): void => {
    for (const child of children.values()) child.kill(signal);
  };

  for (let index = 0; index < processes; index++) {
    const port = metricsPort === undefined ? [] : ['--metrics-port', String(metricsPort === 0 ? 0 : metricsPort + index)];
    const child = spawn(process.execPath, [...process.execArgv, entry, 'worker', ...args, '--processes', '1', ...port], {
      // The IPC channel tells a child when the supervisor is gone, even killed with SIGKILL.
      stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, SHEAF_WORKER_INDEX: String(index) },
    });
    children.set(index, child);
  }
  write(`sheaf: supervising ${processes} worker processes (pids ${[...children.values()].map((c) => c.pid).join(', ')})`);

  return new Promise<number>((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      if (state === 'running') {
        state = 'draining';
        write(`sheaf: ${signal}; draining ${children.size} worker processes (send it again to exit at once)`);
        stopAll('SIGTERM');
        return;
      }
      // A second signal: each child, signalled again, exits at once without draining.
      forced = true;
      stopAll('SIGTERM');
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);

    for (const [index, child] of children) {
      child.on('exit', (code, signal) => {
        children.delete(index);
        const status = code ?? (signal ? 128 : ExitCode.failure);
        codes.push(status);
        if (state === 'running') {
          state = 'failing';
          write(`sheaf: worker process ${index} (pid ${child.pid}) exited with ${status}; draining the others and exiting 1`);
          stopAll('SIGTERM');
        }
        if (children.size > 0) return;
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        if (state === 'failing') resolve(ExitCode.failure);
        else if (forced) resolve(ExitCode.interrupted);
        else resolve(codes.every((c) => c === ExitCode.ok) ? ExitCode.ok : ExitCode.failure);
      });
    }
  });
}
