/**
 * A job tracker's term: one tenure as the namespace's active tracker.
 *
 * A term begins when the tracker gets the exclusive producer on
 * `sheaf-job-snapshots` (`access: 'exclusive'`): the broker lets one
 * producer hold it, so one tracker is active, and the topic's epoch, which
 * grows with each new holder, numbers the terms. A term ends when the
 * producer is fenced (the tracker's connection was lost, as by a process
 * frozen past the broker's keepalive, and another tracker took the topic
 * over: nothing it writes there is stored any more), when one of its
 * consumers is lost, or when the tracker closes.
 *
 * Why the snapshots have a topic of their own: an exclusive producer
 * excludes every other producer of its topic, and the events topic is
 * written by every worker and client. Fencing the snapshots fences the
 * finished mark, which is written only in a snapshot.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { ProducerBusyError, TransportClosedError } from '../errors.js';
import { JOB_EVENTS_TOPIC, JOB_SNAPSHOTS_TOPIC, JOB_TRACKER_SUBSCRIPTION } from '../topics.js';
import { isAbortError, type Consumer, type Producer, type ReceivedMessage, type Transport } from '../transport/transport.js';
import { encodeJobEvent } from '../wire/job-events.js';

/** What a tracker holds while it is the active one. */
export interface TrackerTerm {
  /** The topic epoch of its exclusive producer: the term's number, higher than every term before. */
  readonly epoch: number;
  /** The exclusive producer on `sheaf-job-snapshots`. */
  readonly writer: Producer;
  /** Job events from clients and workers (`sheaf-job-events`). */
  readonly events: Consumer;
  /** Snapshots, its own and those of the terms before it not yet replaced (`sheaf-job-snapshots`). */
  readonly snapshots: Consumer;
  /** The id of the `trackerActivated` marker this term wrote: read back, the term has read every older snapshot. */
  readonly markerId: string;
  /** Aborted when the term ends, for whatever reason (lost, or the tracker closes): reading stops. */
  readonly ended: AbortController;
  /** Set when the term was lost (fenced, a consumer gone): nothing more is written or acked in it. */
  lost: boolean;
}

/** How a tracker competes for a term. */
export interface TermOptions {
  readonly transport: Transport;
  readonly log: Logger;
  /** Permits of each of the term's consumers. */
  readonly maxUnacked: number;
  /** How long a standby waits between tries for the snapshots topic, in ms. */
  readonly retryMs: number;
  /** Now, in epoch ms (the marker's time). */
  readonly now: () => number;
}

/**
 * Waits (trying every `retryMs`) until this process holds the snapshots
 * topic, then subscribes to both topics and writes its marker. Rejects with
 * the signal's reason when `signal` aborts (the tracker closes).
 */
export async function acquireTerm(options: TermOptions, signal: AbortSignal): Promise<TrackerTerm> {
  const { transport, log } = options;
  let failures = 0;
  for (;;) {
    signal.throwIfAborted();
    let writer: Producer;
    try {
      // Only the producer while standing by: one refused request a second, not also a consumer attached to the
      // tracker's subscription and closed again (what ensureSubscription does); the term subscribes once it holds it.
      writer = await transport.createProducer(JOB_SNAPSHOTS_TOPIC, { access: 'exclusive' });
    } catch (error) {
      if (!(error instanceof ProducerBusyError)) {
        // Not "another tracker is active": say so, on the first failure and every 60th (about once a minute).
        if (failures++ % 60 === 0) {
          log.warn({ err: error }, `the job tracker cannot open ${JOB_SNAPSHOTS_TOPIC}; trying again every ${options.retryMs} ms`);
        }
      }
      await delay(options.retryMs, undefined, { signal });
      continue;
    }
    try {
      return await openTerm(options, writer);
    } catch (error) {
      await writer.close().catch(() => undefined);
      if (failures++ % 60 === 0) log.warn({ err: error }, 'the job tracker took the snapshots topic but could not subscribe; trying again');
      await delay(options.retryMs, undefined, { signal });
    }
  }
}

async function openTerm(options: TermOptions, writer: Producer): Promise<TrackerTerm> {
  const { transport } = options;
  const subscribe = (topic: string): Promise<Consumer> =>
    transport.subscribe({ topic, subscription: JOB_TRACKER_SUBSCRIPTION, maxUnacked: options.maxUnacked, subscriptionType: 'failover' });
  // Both subscribed before the first write (the marker): a message published while a topic has no subscription may be dropped.
  const events = await subscribe(JOB_EVENTS_TOPIC);
  let snapshots: Consumer;
  try {
    snapshots = await subscribe(JOB_SNAPSHOTS_TOPIC);
  } catch (error) {
    await events.close().catch(() => undefined);
    throw error;
  }
  const epoch = writer.epoch ?? 0;
  const markerId = randomUUID();
  try {
    await writer.send({
      payload: encodeJobEvent({ v: 1, kind: 'trackerActivated', trackerId: markerId, epoch, at: options.now() }),
      key: markerId,
    });
  } catch (error) {
    await Promise.allSettled([events.close(), snapshots.close()]);
    throw error;
  }
  return { epoch, writer, events, snapshots, markerId, ended: new AbortController(), lost: false };
}

/** Closes what the term opened. Nothing is acked here: what it held goes to the next term. */
export async function closeTerm(term: TrackerTerm): Promise<void> {
  term.ended.abort();
  await Promise.allSettled([term.events.close(), term.snapshots.close(), term.writer.close()]);
}

/** Hands each message `consumer` delivers to `handle` until `signal` aborts or the consumer is lost (logged). */
export async function readUntil(
  consumer: Consumer,
  signal: AbortSignal,
  log: Logger,
  handle: (message: ReceivedMessage) => void,
): Promise<void> {
  while (!signal.aborted) {
    let messages: ReceivedMessage[];
    try {
      messages = await consumer.receiveMany(1000, signal);
    } catch (error) {
      if (isAbortError(error) || signal.aborted) return;
      if (error instanceof TransportClosedError) {
        log.warn({ err: error, topic: consumer.topic }, 'the job tracker lost a consumer');
        return;
      }
      // Not in a tight loop: a second before the next try.
      log.warn({ err: error }, 'receiving job events failed; trying again in 1 s');
      try {
        await delay(1000, undefined, { signal });
      } catch {
        return;
      }
      continue;
    }
    for (const message of messages) handle(message);
  }
}
