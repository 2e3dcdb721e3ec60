import { InvalidArgumentError, type Command } from 'commander';
import { positiveInt } from './arguments.js';
import { configuredToken, setupFromConfigFile, type ConfigSetup } from '../config/from-config.js';
import { ConfigError } from '../errors.js';
import { DEAD_LETTER_SUBSCRIPTION, deadLetterTopic, taskTopic } from '../topics.js';
import { isAbortError, type Consumer, type ReceivedMessage } from '../transport/transport.js';
import { decodeDeadLetter, encodeEnvelope, type DeadLetterEnvelope } from '../wire/envelopes.js';
import { table } from '../util/text-table.js';
import { PulsarAdmin } from '../transport/pulsar/admin.js';
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
    .command('purge')
    .description('delete dead letters of a service for good: all, some tasks, or those older than a duration')
    .argument('<service>', 'the service name')
    .option('-c, --config <file>', 'the configuration file', './sheaf.yml')
    .option('--task-id <id>', 'purge only this task, repeatable', (v: string, all: string[]) => [...all, v], [])
    .option('--older-than <duration>', 'purge only dead letters older than this: 30s, 15m, 12h, 7d', parseDuration)
    .option('--yes', 'do not ask for confirmation (needed when standard input is not a terminal)')
    .option('--limit <n>', 'read at most this many', positiveInt, 1000)
    .option('--idle-ms <ms>', 'stop reading after this long without a new dead letter', positiveInt, 2000)
    .action(async (service: string, options: DlqOptions & { taskId: string[]; olderThan?: number; yes?: boolean }) => {
      process.exitCode = await purge(service, options);
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
        // The task's own last error says what went wrong; the detail only says why it stopped.
        truncate(d.error ? `${d.error.name}: ${d.error.message}` : d.detail, 80),
      ]);
      process.stdout.write(`${table([['task', 'method', 'reason', 'attempts', 'dead at', 'last error'], ...rows])}\n`);
    }
    return ExitCode.ok;
  });
}

async function replay(service: string, options: DlqOptions & { taskId: string[] }): Promise<number> {
  return withDeadLetters(service, options, async (letters, consumer, setup) => {
    const wanted = new Set(options.taskId);
    const chosen = letters.filter(({ letter }) => wanted.size === 0 || (letter.task && wanted.has(letter.task.taskId)));
    const goneClients = await clientsGone(chosen, setup);
    const producer = await setup.transport.createProducer(taskTopic(service));
    const bar = progressBar('replayed', chosen.length);
    let replayed = 0;
    let unreadable = 0;
    let copies = 0;
    // A task id is replayed once: a second dead letter of it (a twin that ran in another worker) only leaves.
    const seen = new Set<string>();
    try {
      for (const { letter, message } of chosen) {
        const task = letter.task;
        if (!task) {
          unreadable += 1; // nothing to dispatch: its bytes stay on the dead-letter topic
          bar.tick();
          continue;
        }
        if (seen.has(task.taskId)) {
          await consumer.ack(message);
          copies += 1;
          bar.tick();
          continue;
        }
        seen.add(task.taskId);
        // A client that is gone would never read the result: replay without asking for one.
        const replyTo = task.replyTo !== null && goneClients.has(task.replyTo) ? null : task.replyTo;
        // A replay starts afresh: batched with any others again (no isolation), retries from zero.
        const { isolation: _isolation, ...fresh } = task;
        const again = { ...fresh, replyTo, retryIndex: 0, retrySequence: task.retrySequence + 1, lastError: letter.error };
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
    if (copies > 0) process.stdout.write(`; removed ${copies} more of task(s) already replayed (a task id is replayed once)`);
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

async function purge(service: string, options: DlqOptions & { taskId: string[]; olderThan?: number; yes?: boolean }): Promise<number> {
  return withDeadLetters(service, options, async (letters, consumer) => {
    const wanted = new Set(options.taskId);
    const cutoff = options.olderThan === undefined ? Infinity : Date.now() - options.olderThan;
    const chosen = letters.filter(
      ({ letter }) => (wanted.size === 0 || (letter.task !== null && wanted.has(letter.task.taskId))) && letter.deadAt < cutoff,
    );
    if (chosen.length === 0) {
      process.stdout.write(`no dead letters of ${service} match; nothing purged\n`);
      return ExitCode.ok;
    }
    if (!options.yes) {
      if (!process.stdin.isTTY) {
        process.stderr.write(`sheaf: purging ${chosen.length} dead letters cannot be undone; confirm with --yes\n`);
        return ExitCode.usage;
      }
      const answer = await ask(`purge ${chosen.length} dead letters of ${service} for good? [y/N] `);
      if (!/^y(es)?$/i.test(answer.trim())) {
        process.stdout.write('nothing purged\n');
        return ExitCode.ok;
      }
    }
    for (const { message } of chosen) await consumer.ack(message);
    process.stdout.write(`purged ${chosen.length} dead letters of ${service}\n`);
    return ExitCode.ok;
  });
}

async function ask(question: string): Promise<string> {
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return await rl.question(question);
  } finally {
    rl.close();
  }
}

/** `30s`, `15m`, `12h`, `7d` → milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(s|m|h|d)$/.exec(text.trim());
  if (!match) throw new InvalidArgumentError(`'${text}' is not a duration; write it like 30s, 15m, 12h or 7d`);
  const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 's' | 'm' | 'h' | 'd'];
  return Number(match[1]) * unit;
}

/**
 * Result topics of the chosen tasks whose client no longer listens (no
 * subscription), asked of the admin API when `pulsar.adminUrl` is set. Each is
 * reported once; without an admin URL, replays keep their reply topics.
 */
async function clientsGone(chosen: ReadLetter[], setup: ConfigSetup): Promise<Set<string>> {
  const replyTopics = new Map<string, number>();
  for (const { letter } of chosen)
    if (letter.task?.replyTo) replyTopics.set(letter.task.replyTo, (replyTopics.get(letter.task.replyTo) ?? 0) + 1);
  const gone = new Set<string>();
  const p = setup.loaded.config.pulsar;
  if (replyTopics.size === 0 || !p) return gone;
  if (!p.adminUrl) {
    process.stderr.write('sheaf: set pulsar.adminUrl to check whether the clients that dispatched these tasks still listen for results\n');
    return gone;
  }
  const token = configuredToken(setup.loaded);
  const admin = new PulsarAdmin({ adminUrl: p.adminUrl, ...(token !== undefined ? { token } : {}) });
  for (const [topic, count] of replyTopics) {
    const subscriptions = await admin.subscriptions(p.tenant ?? 'public', p.namespace ?? 'default', topic);
    if (subscriptions === null || subscriptions.length === 0) {
      gone.add(topic);
      process.stderr.write(
        `sheaf: the client of ${count} replayed task(s) is gone (${topic} has no subscription): replayed without a result\n`,
      );
    }
  }
  return gone;
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
    const known = setup.loaded.config.services?.map((s) => s.name) ?? [];
    if (!known.includes(service)) {
      process.stderr.write(
        `sheaf: ${service} is not a service of ${setup.loaded.path} (it has: ${known.join(', ') || 'none'}); reading its dead-letter topic anyway\n`,
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
