import type { Logger } from 'pino';
import { SheafClient } from '../../src/client/client.js';
import { Batch } from '../../src/service/decorators.js';
import { DEAD_LETTER_SUBSCRIPTION, deadLetterTopic } from '../../src/topics.js';
import { InMemoryTransport } from '../../src/transport/memory/in-memory-transport.js';
import type { Transport } from '../../src/transport/transport.js';
import { decodeDeadLetter, type DeadLetterEnvelope } from '../../src/wire/envelopes.js';
import type { BatchReport, TaskReport } from '../../src/worker/events.js';
import type { ServiceOptions } from '../../src/worker/options.js';
import { SheafWorker } from '../../src/worker/worker.js';
import { testLogger } from './logger.js';

export interface System {
  readonly transport: Transport;
  readonly worker: SheafWorker;
  readonly client: SheafClient;
  /** Every batch the worker ran, in order. */
  readonly batches: BatchReport[];
  /** Every task settlement, in order. */
  readonly settlements: TaskReport[];
  /**
   * Resolves with the batch reports once they hold `tasks` tasks in all. A
   * client may see its results before the worker reports the batch (results
   * are published before the acks), so tests that read reports wait here.
   */
  batched(tasks: number): Promise<BatchReport[]>;
  stop(): Promise<void>;
}

/** A worker and a client on one transport (in-memory unless given), with reports collected. */
export async function startSystem(
  services: ServiceOptions[],
  transport: Transport = new InMemoryTransport({ nackRedeliveryDelayMs: 20 }),
  workerLogger: Logger = testLogger,
): Promise<System> {
  const worker = new SheafWorker({ transport, services, logger: workerLogger, name: 'test-worker' });
  const batches: BatchReport[] = [];
  const settlements: TaskReport[] = [];
  worker.events.on('batch', (r) => batches.push(r));
  worker.events.on('task', (r) => settlements.push(r));
  await worker.start();
  const client = await SheafClient.connect({ transport, logger: testLogger });
  return {
    transport,
    worker,
    client,
    batches,
    settlements,
    batched(tasks) {
      const done = (): boolean => batches.reduce((n, b) => n + b.size, 0) >= tasks;
      if (done()) return Promise.resolve(batches);
      return new Promise((resolve) => {
        const check = (): void => {
          if (!done()) return;
          worker.events.off('batch', check);
          resolve(batches);
        };
        worker.events.on('batch', check);
      });
    },
    async stop() {
      await worker.close();
      await client.close();
      await transport.close();
    },
  };
}

/** Reads `count` dead letters of a service, leaving them on the topic. */
export async function readDeadLetters(transport: Transport, service: string, count: number): Promise<DeadLetterEnvelope[]> {
  const consumer = await transport.subscribe({
    topic: deadLetterTopic(service),
    subscription: DEAD_LETTER_SUBSCRIPTION,
    maxUnacked: Math.max(count, 1),
  });
  try {
    const out: DeadLetterEnvelope[] = [];
    for (let i = 0; i < count; i++) out.push(decodeDeadLetter((await consumer.receive()).payload));
    return out;
  } finally {
    await consumer.close();
  }
}

/** Counts calls per key: how often each task was executed. */
export class Counter {
  private readonly counts = new Map<string, number>();
  add(key: string): number {
    const n = (this.counts.get(key) ?? 0) + 1;
    this.counts.set(key, n);
    return n;
  }
  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }
  values(): number[] {
    return [...this.counts.values()];
  }
}

/** An echo service (`echo(value)` answers `echo <value>`) that counts each task's executions in `executions`. */
export function countingEcho(executions: Counter) {
  class CountingEcho {
    echo(_v: string): void {}
    @Batch('echo')
    async echoMany(tasks: Map<string, string>): Promise<Map<string, string>> {
      for (const id of tasks.keys()) executions.add(id);
      return new Map([...tasks].map(([id, v]) => [id, `echo ${v}`]));
    }
  }
  return CountingEcho;
}
