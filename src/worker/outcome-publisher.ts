/**
 * Makes task outcomes durable: results to the client's topic, retries back to
 * the service's task topic with their delay, dead letters to the service's
 * dead-letter topic, final outcomes of job tasks to the job-events topic.
 * Every method resolves only once the broker has the message, so the caller
 * may ack the task's message afterwards.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { BadReplyToError } from '../errors.js';
import { deadLetterTopic, isResultTopic, JOB_EVENTS_TOPIC, JOB_TRACKER_SUBSCRIPTION, taskTopic, WORKER_SUBSCRIPTION } from '../topics.js';
import { KeptProducers } from '../transport/kept-producers.js';
import { DEDUPLICATED, type Producer, type Transport } from '../transport/transport.js';
import { toPlain } from '../util/json.js';
import {
  encodeEnvelope,
  type DeadLetterEnvelope,
  type ResultBatchEnvelope,
  type ResultEnvelope,
  type TaskEnvelope,
} from '../wire/envelopes.js';
import { encodeJobEvent, type JobFact } from '../wire/job-events.js';

/** A result as it travels: a successful value through class-transformer when it is a class instance. */
function wireResult(result: ResultEnvelope): ResultEnvelope {
  if (result.outcome !== 'succeeded') return result;
  const value = toPlain(result.value);
  return value === result.value ? result : { ...result, value };
}

/** Result producers kept open at once; the least recently used is closed past this. */
const MAX_RESULT_PRODUCERS = 256;

/** Publishes a service's task outcomes for its runner and settler; one per service in a worker. */
export class OutcomePublisher {
  private readonly resultProducers = new Map<string, Promise<Producer>>();
  /** Opened on the first job task (most workers never see one), after the trackers' subscription, so events wait for a tracker. */
  private readonly jobEvents: KeptProducers;
  /** Task producers of the services job callbacks go to (`onItemError`), opened on first use. */
  private readonly callbackTasks: KeptProducers;

  private constructor(
    private readonly transport: Transport,
    private readonly tasks: Producer,
    private readonly deadLetters: Producer,
    private readonly logger: Logger,
  ) {
    this.jobEvents = new KeptProducers(transport, { subscription: JOB_TRACKER_SUBSCRIPTION, subscriptionType: 'failover' });
    this.callbackTasks = new KeptProducers(transport, { subscription: WORKER_SUBSCRIPTION });
  }

  static async open(transport: Transport, serviceName: string, logger: Logger): Promise<OutcomePublisher> {
    const [tasks, deadLetters] = await Promise.all([
      transport.createProducer(taskTopic(serviceName)),
      transport.createProducer(deadLetterTopic(serviceName)),
    ]);
    return new OutcomePublisher(transport, tasks, deadLetters, logger);
  }

  async publishResult(replyTo: string, result: ResultEnvelope): Promise<void> {
    const producer = await this.resultProducer(replyTo);
    await producer.send({ payload: encodeEnvelope(wireResult(result)), properties: { 'sheaf-task-id': result.taskId } });
  }

  /**
   * Several results for one client as one message (`resultBatch`), for a
   * client whose tasks say it reads them. Rejects with `MessageTooLargeError`
   * when they do not fit in one message; nothing is sent then.
   */
  async publishResults(replyTo: string, results: readonly ResultEnvelope[]): Promise<void> {
    const producer = await this.resultProducer(replyTo);
    const envelope: ResultBatchEnvelope = { v: 1, kind: 'resultBatch', results: results.map(wireResult) };
    await producer.send({ payload: encodeEnvelope(envelope), properties: { 'sheaf-result-count': String(results.length) } });
  }

  /** Publishes the next attempt of a task, delivered after `delayMs`. */
  async publishRetry(task: TaskEnvelope, deliverAt: number): Promise<void> {
    await this.tasks.send({
      payload: encodeEnvelope(task),
      key: task.meta.batchKey,
      properties: { 'sheaf-task-id': task.taskId, 'sheaf-retry-index': String(task.retryIndex) },
      deliverAt,
    });
  }

  /**
   * Publishes a dead letter; resolves with `existed` when the letter of this
   * task attempt was stored before (by another worker that ran a copy of the
   * same attempt at the same time), and nothing is stored then.
   *
   * Why a producer per letter: the broker can hand one delayed message (a
   * retry) to two workers at once, and each runs it; neither can know of the
   * other in time (see `SettledFeed`), so each would write a letter. A letter
   * of a task's attempt goes out through a producer named after that attempt
   * (`deadLetterProducerName`), with sequence id 0: with the namespace's
   * deduplication on (`sheaf setup`), the broker stores one message per
   * name, a second opener of the name waits until the first has closed and
   * then learns that it was stored (`lastSequenceId` 0), and a worker that
   * died before sending leaves the name free. So at most one letter per task
   * id and attempt, whichever worker writes it. Costs a producer opened and
   * closed per letter, and the broker keeps each name (about 100 bytes) for
   * its producer-inactivity period (6 hours by default).
   *
   * Without deduplication on the namespace, twins on two workers at once can
   * still leave two letters; `sheaf dlq replay` then replays the task once.
   * A letter of bytes that could not be read (no task attempt) goes out
   * through the service's shared dead-letter producer.
   */
  async publishDeadLetter(deadLetter: DeadLetterEnvelope): Promise<'written' | 'existed'> {
    const properties: Record<string, string> = { 'sheaf-dead-letter-reason': deadLetter.reason };
    const payload = encodeEnvelope(deadLetter);
    const task = deadLetter.task;
    if (!task) {
      await this.deadLetters.send({ payload, properties });
      return 'written';
    }
    properties['sheaf-task-id'] = task.taskId;
    const producer = await this.transport.createProducer(this.deadLetters.topic, { name: deadLetterProducerName(task) });
    try {
      if (producer.lastSequenceId >= 0) return 'existed';
      return (await producer.send({ payload, properties, sequenceId: 0 })) === DEDUPLICATED ? 'existed' : 'written';
    } finally {
      await producer.close().catch(() => undefined);
    }
  }

  /**
   * Final outcomes of job tasks, for the job tracker, keyed by job id. The
   * tracker's subscription is made first, so that events published before
   * any tracker ever ran are kept for it.
   */
  async publishJobEvents(events: readonly JobFact[]): Promise<void> {
    const producer = await this.jobEvents.get(JOB_EVENTS_TOPIC);
    await Promise.all(events.map((event) => producer.send({ payload: encodeJobEvent(event), key: event.jobId })));
  }

  /**
   * A job callback task (`onItemError`) to its service's task topic: the
   * service is a checked name (the envelope's schema), so the topic is a task
   * topic of this namespace, nothing else.
   */
  async publishCallbackTask(task: TaskEnvelope): Promise<void> {
    const producer = await this.callbackTasks.get(taskTopic(task.service));
    await producer.send({ payload: encodeEnvelope(task), key: task.meta.batchKey, properties: { 'sheaf-task-id': task.taskId } });
  }

  async close(): Promise<void> {
    // A result producer that failed to open has nothing to close.
    await this.jobEvents.close().catch(() => undefined);
    await this.callbackTasks.close().catch(() => undefined);
    const results = await Promise.allSettled(this.resultProducers.values());
    this.resultProducers.clear();
    const opened = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    await Promise.all([this.tasks, this.deadLetters, ...opened].map((p) => p.close().catch(() => undefined)));
  }

  private resultProducer(topic: string): Promise<Producer> {
    // The runner dead-letters such tasks first; this is the last guard before a producer exists.
    if (!isResultTopic(topic)) return Promise.reject(new BadReplyToError(topic.slice(0, 200)));
    const cached = this.resultProducers.get(topic);
    if (cached) {
      // Refresh its place: Map order is insertion order, so this makes it the most recent.
      this.resultProducers.delete(topic);
      this.resultProducers.set(topic, cached);
      return cached;
    }
    const created = this.transport.createProducer(topic);
    created.catch(() => this.resultProducers.delete(topic));
    this.resultProducers.set(topic, created);
    if (this.resultProducers.size > MAX_RESULT_PRODUCERS) {
      const [oldestTopic, oldest] = this.resultProducers.entries().next().value as [string, Promise<Producer>];
      this.resultProducers.delete(oldestTopic);
      oldest
        .then((p) => p.close())
        .catch((error: unknown) => this.logger.warn({ err: error, topic: oldestTopic }, 'closing an idle result producer failed'));
    }
    return created;
  }
}

/**
 * The producer name a task attempt's dead letter is written under: the
 * same for every copy of the attempt, another for every other attempt (a
 * retry, a replay), 128 bits of a hash so that any task id fits.
 */
export function deadLetterProducerName(task: Pick<TaskEnvelope, 'taskId' | 'retrySequence' | 'retryIndex'>): string {
  const digest = createHash('sha256').update(`${task.taskId}\n${task.retrySequence}\n${task.retryIndex}`).digest('hex');
  return `sheaf-dead-letter-${digest.slice(0, 32)}`;
}
