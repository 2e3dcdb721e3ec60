/**
 * `sheaf demo`: thousands of email tasks over a few tenants (batch keys) on
 * the in-memory transport, a progress bar while they run, and a summary of
 * how they were batched.
 *
 * Tenants get skewed traffic on purpose: busy ones fill batches
 * (`maxMessages`), quiet ones are flushed by the clock (`maxSeconds`), which
 * is the latency/throughput trade-off the batch buffer makes.
 */
import cliProgress from 'cli-progress';
import { pino } from 'pino';
import { SheafClient } from '../client/client.js';
import { TaskFailedError } from '../errors.js';
import { InMemoryTransport } from '../transport/memory/in-memory-transport.js';
import type { Transport } from '../transport/transport.js';
import { SheafWorker } from '../worker/worker.js';
import { EmailServiceImpl, type EmailService } from './email-service.js';
import { table } from '../util/text-table.js';
import { DemoSummary } from './summary.js';

export interface DemoOptions {
  readonly tasks: number;
  readonly out: NodeJS.WritableStream;
  /** Where the demo runs; closed at the end. Default: a new in-memory transport. */
  readonly transport?: Transport;
}

/** Tenants and their share of the traffic. */
const TENANTS: ReadonlyArray<readonly [string, number]> = [
  ['tenant-acme', 0.55],
  ['tenant-globex', 0.3],
  ['tenant-initech', 0.12],
  ['tenant-umbrella', 0.03],
];

/** Runs the demo; resolves with true when every task is accounted for (its result arrived, a value or a failure). */
export interface DemoResult {
  readonly ok: boolean;
  readonly succeeded: number;
  readonly failed: number;
  readonly retried: number;
}

export async function runDemo({ tasks, out, transport = new InMemoryTransport() }: DemoOptions): Promise<DemoResult> {
  const logger = pino({ level: 'warn' });
  const worker = new SheafWorker({
    transport,
    logger,
    name: 'demo-worker',
    // A development run: stacks stay in dead letters and failure results.
    errors: { includeStack: true },
    services: [
      {
        name: 'EmailService',
        executor: {
          factory: () => new EmailServiceImpl(),
          concurrency: 4,
          batch: { maxMessages: 100, maxSeconds: 0.25 },
          retry: { minimumSeconds: 0.05, maximumSeconds: 1, maximumRetries: 3 },
        },
      },
    ],
  });
  const summary = new DemoSummary();
  worker.events.on('batch', (r) => summary.onBatch(r));
  worker.events.on('task', (r) => summary.onTask(r));
  await worker.start();
  const client = await SheafClient.connect({ transport, logger });

  out.write(`Sheaf demo: ${tasks} email tasks over ${TENANTS.length} tenants (batch keys), ${transport.kind} transport\n`);
  out.write('executor: concurrency 4, batch { maxMessages: 100, maxSeconds: 0.25 }, retry { minimumSeconds: 0.05, maximumRetries: 3 }\n\n');

  const progress = new cliProgress.SingleBar(
    {
      format: 'results {bar} {value}/{total} | {succeeded} sent, {failed} failed | {duration_formatted}',
      stream: out,
      noTTYOutput: true,
      notTTYSchedule: 1000,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  let sent = 0;
  let failed = 0;
  progress.start(tasks, 0, { succeeded: 0, failed: 0 });

  const started = Date.now();
  const stubs = TENANTS.map(([tenant]) => client.service<EmailService>('EmailService', { meta: { batchKey: tenant } }));
  const outcomes: Promise<void>[] = [];
  for (let i = 0; i < tasks; i++) {
    const tenant = pickTenant(i);
    // Every 200th address is flaky (fails once, then succeeds); every 500th bounces (never succeeds).
    const to = i % 500 === 499 ? `bounce-${i}@example.com` : i % 200 === 199 ? `flaky-${i}@example.com` : `user-${i}@example.com`;
    // Dispatches are not awaited one by one: the producer pipelines them (and bounds what is pending).
    const handle = client.dispatch(stubs[tenant]!).send(to, `Invoice ${i}`, 'Thank you for your business.');
    outcomes.push(
      handle
        .then((h) => h.result())
        .then(
          () => {
            sent += 1;
          },
          (error: unknown) => {
            if (!(error instanceof TaskFailedError)) throw error;
            failed += 1;
          },
        )
        .finally(() => progress.increment(1, { succeeded: sent, failed })),
    );
  }
  await Promise.all(outcomes);
  progress.stop();
  const elapsed = (Date.now() - started) / 1000;
  await worker.close();
  await client.close();
  await transport.close();

  out.write('\nHow the executions were batched, per batch key (retries run again through batching):\n\n');
  out.write(`${summary.render()}\n\n`);
  out.write(
    `${table([
      ['tasks', 'succeeded', 'failed', 'retries', 'seconds', 'tasks/s'],
      [String(tasks), String(sent), String(failed), String(summary.retried), elapsed.toFixed(2), (tasks / elapsed).toFixed(0)],
    ])}\n\n`,
  );
  out.write(
    'Flaky addresses failed once and succeeded on retry; bounced addresses failed with NonRetryableError and went to the dead-letter topic.\n',
  );
  return {
    ok: sent + failed === tasks && summary.succeeded === sent && summary.failed === failed,
    succeeded: sent,
    failed,
    retried: summary.retried,
  };
}

function pickTenant(i: number): number {
  // A fixed interleaving that gives each tenant its share: deterministic runs.
  const x = ((i * 7919) % 1000) / 1000;
  let acc = 0;
  for (let t = 0; t < TENANTS.length; t++) {
    acc += TENANTS[t]![1];
    if (x < acc) return t;
  }
  return TENANTS.length - 1;
}
