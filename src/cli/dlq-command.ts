import type { Command } from 'commander';
import { positiveInt } from './arguments.js';
import { setupFromConfigFile, type ConfigSetup } from '../config/from-config.js';
import { ConfigError } from '../errors.js';
import { DEAD_LETTER_SUBSCRIPTION, deadLetterTopic, taskTopic } from '../topics.js';
import { isAbortError, type Consumer, type ReceivedMessage } from '../transport/transport.js';
import { decodeDeadLetter, encodeEnvelope, type DeadLetterEnvelope } from '../wire/envelopes.js';
import { table } from '../util/text-table.js';
import { ExitCode } from './exit-codes.js';
import { progressBar } from './progress.js';

interface DlqOptions {
  config: string;
  limit: number;
  idleMs: number;
}

export function dlqCommand(program: Command): void {
  const dlq = program
    .command('dlq')
    .description("inspect and replay a service's dead letters (tasks that failed for good or could never run)");
  dlq
    .command('list')
    .description('print the dead letters of a service; they stay on the topic')
    .argument('<service>', 'the service name')
    .option('-c, --config <file>', 'the configuration file', './sheaf.yml')
    .option('--json', 'one JSON object per line instead of a table')
    .option('--limit <n>', 'read at most this many', positiveInt, 1000)
    .option('--idle-ms <ms>', 'stop reading after this long without a new dead letter', positiveInt, 2000)
    .action(async (service: string, options: DlqOptions & { json?: boolean }) => {
      process.exitCode = await list(service, options);
    });
  dlq
    .command('replay')
    .description('dispatch dead-lettered tasks again (retrySequence + 1, retries from zero), removing them from the dead letters')
    .argument('<service>', 'the service name')
    .option('-c, --config <file>', 'the configuration file', './sheaf.yml')
    .option('--task-id <id>', 'replay only this task, repeatable (default: all)', (v: string, all: string[]) => [...all, v], [])
    .option('--limit <n>', 'read at most this many', positiveInt, 1000)
    .option('--idle-ms <ms>', 'stop reading after this long without a new dead letter', positiveInt, 2000)
    .action(async (service: string, options: DlqOptions & { taskId: string[] }) => {
      process.exitCode = await replay(service, options);
    });
}

async function list(service: string, options: DlqOptions & { json?: boolean }): Promise<number> {
  return withDeadLetters(service, options, async (letters) => {
    if (options.json) {
      for (const { letter } of letters) process.stdout.write(`${JSON.stringify(letter)}\n`);
    } else if (letters.length === 0) {
      process.stdout.write(`no dead letters for ${service}\n`);
    } else {
      const rows = letters.map(({ letter: d }) => [
        d.task?.taskId ?? '(unreadable)',
        d.task?.method ?? '',
        d.reason,
        String(d.attempts),
        new Date(d.deadAt).toISOString(),
        truncate(d.detail, 60),
      ]);
      process.stdout.write(`${table([['task', 'method', 'reason', 'attempts', 'dead at', 'detail'], ...rows])}\n`);
    }
    return ExitCode.ok;
  });
}

async function replay(service: string, options: DlqOptions & { taskId: string[] }): Promise<number> {
  return withDeadLetters(service, options, async (letters, consumer, setup) => {
    const wanted = new Set(options.taskId);
    const chosen = letters.filter(({ letter }) => wanted.size === 0 || (letter.task && wanted.has(letter.task.taskId)));
    const producer = await setup.transport.createProducer(taskTopic(service));
    const bar = progressBar('replayed', chosen.length);
    let replayed = 0;
    let unreadable = 0;
    try {
      for (const { letter, message } of chosen) {
        const task = letter.task;
        if (!task) {
          unreadable += 1; // nothing to dispatch: its bytes stay on the dead-letter topic
          bar.tick();
          continue;
        }
        const again = { ...task, retryIndex: 0, retrySequence: task.retrySequence + 1, lastError: letter.error };
        await producer.send({ payload: encodeEnvelope(again), key: task.meta.batchKey, properties: { 'sheaf-task-id': task.taskId } });
        await consumer.ack(message); // only once the new task is durable
        replayed += 1;
        bar.tick();
      }
    } finally {
      bar.stop();
      await producer.close();
    }
    process.stdout.write(`replayed ${replayed} of ${chosen.length} dead letters of ${service}`);
    process.stdout.write(unreadable > 0 ? `; ${unreadable} could not be read as tasks and stay\n` : '\n');
    if (wanted.size > 0) {
      const found = new Set(chosen.map(({ letter }) => letter.task?.taskId));
      const missing = [...wanted].filter((id) => !found.has(id));
      if (missing.length > 0) {
        process.stderr.write(`sheaf: no dead letter for task ${missing.join(', ')}\n`);
        return ExitCode.failure;
      }
    }
    return ExitCode.ok;
  });
}

interface ReadLetter {
  readonly letter: DeadLetterEnvelope;
  readonly message: ReceivedMessage;
}

/** Reads dead letters until none comes for `idleMs`; the consumer closes afterwards, so unacked ones stay. */
async function withDeadLetters(
  service: string,
  options: DlqOptions,
  use: (letters: ReadLetter[], consumer: Consumer, setup: ConfigSetup) => Promise<number>,
): Promise<number> {
  // Logs go to stderr: stdout carries the command's data.
  const setup = await setupFromConfigFile(options.config, { logStream: process.stderr });
  try {
    if (setup.transport.kind === 'inMemory') {
      throw new ConfigError(
        [
          {
            path: 'transport',
            message: 'dead letters of the in-memory transport live only inside the process that made them; use transport: pulsar',
          },
        ],
        { source: setup.loaded.path },
      );
    }
    const consumer = await setup.transport.subscribe({
      topic: deadLetterTopic(service),
      subscription: DEAD_LETTER_SUBSCRIPTION,
      maxUnacked: options.limit,
    });
    try {
      const letters: ReadLetter[] = [];
      while (letters.length < options.limit) {
        const message = await receiveWithin(consumer, options.idleMs);
        if (!message) break;
        try {
          letters.push({ letter: decodeDeadLetter(message.payload), message });
        } catch (error) {
          process.stderr.write(`sheaf: skipping an unreadable dead letter ${message.id}: ${(error as Error).message}\n`);
        }
      }
      if (letters.length === options.limit) process.stderr.write(`sheaf: read the first ${options.limit}; raise --limit for more\n`);
      return await use(letters, consumer, setup);
    } finally {
      await consumer.close();
    }
  } finally {
    await setup.close();
  }
}

async function receiveWithin(consumer: Consumer, idleMs: number): Promise<ReceivedMessage | null> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), idleMs);
  try {
    return await consumer.receive(controller.signal);
  } catch (error) {
    if (isAbortError(error)) return null;
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
