/**
 * Settled attempts shared between the workers of one service.
 *
 * Why: a broker that loses acks (killed before it stored them) redelivers
 * messages whose outcome is already durable. A copy that reaches the worker
 * that settled it is dropped there (`SettledAttempts`); a copy that reaches
 * another worker used to run again: after a broker kill -9, 31–43 % of tasks
 * ran twice, every one of them on the other worker (docs/reliability.md).
 * So each worker announces the attempts it settled on the service's
 * `sheaf-settled-` topic and puts what the others announce into its own
 * `SettledAttempts`.
 *
 * What it promises, and what not. It is a hint that only ever saves work: an
 * attempt is announced after its outcome is durable (the broker has its
 * result, retry or dead letter), so a copy dropped because of it loses
 * nothing. Announcements are not kept: each worker reads through a
 * non-durable subscription and sees those published while it runs. One may
 * be lost (a broker crash before it was stored, a failed send: logged at
 * debug level); the copy then runs again, as without the feed. Settling
 * never waits for it: sends are not awaited, at most `MAX_SENDS_IN_FLIGHT`
 * are under way, and attempts beyond that are not announced.
 *
 * Cost: one message per `FLUSH_INTERVAL_MS` while tasks settle (or per
 * `MAX_ATTEMPTS_PER_MESSAGE` attempts; a batch with failed attempts at
 * once, see `announce`), read by every worker of the service. A message per batch cost a fifth of the end-to-end throughput on
 * one broker (each is an entry the broker writes); copies come seconds
 * after the outcome they repeat, so a tenth of a second later is as good.
 * Whoever can produce on the topic can make workers drop copies of tasks
 * whose ids they know: docs/security.md says who should.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { settledTopic } from '../topics.js';
import type { Consumer, Producer, Transport } from '../transport/transport.js';
import { isAbortError } from '../transport/transport.js';
import { within } from '../util/within.js';
import {
  MAX_ATTEMPTS_PER_MESSAGE,
  MAX_SHARED_GROUP_LENGTH,
  MAX_SHARED_TASK_ID_LENGTH,
  decodeSettled,
  encodeSettled,
  type SettledAttemptTuple,
} from '../wire/settled-envelope.js';

/** Announcements sent and not yet confirmed at most; past this, attempts are not announced. */
export const MAX_SENDS_IN_FLIGHT = 16;
/** Attempts settled within this many milliseconds travel in one message. */
export const FLUSH_INTERVAL_MS = 100;
/** How long `close()` waits for announcements under way. */
const CLOSE_WAIT_MS = 1000;
/** At most one warning about messages that could not be read per this many milliseconds. */
const WARN_INTERVAL_MS = 60_000;

/** The property naming the worker that sent an announcement, so that it skips its own. */
const SENDER_PROPERTY = 'sheaf-worker';

type FeedState = { readonly kind: 'open' } | { readonly kind: 'closing' } | { readonly kind: 'closed' };

export class SettledFeed {
  private state: FeedState = { kind: 'open' };
  private pending: SettledAttemptTuple[] = [];
  private flushTimer: ReturnType<typeof setTimeout> | null = null;
  /** A flush at the end of this turn is queued (`announce(..., now)`). */
  private flushThisTurn = false;
  private readonly sends = new Set<Promise<void>>();
  private readonly stop = new AbortController();
  private reading: Promise<void> | null = null;
  private unreadable = 0;
  private lastWarnedAt = 0;
  /** Attempts not announced: too many sends under way, or a send that failed. */
  private notAnnounced = 0;

  private constructor(
    /** This worker's own id on the feed (a worker name need not be unique). */
    private readonly id: string,
    private readonly producer: Producer,
    private readonly consumer: Consumer,
    private readonly log: Logger,
  ) {}

  /**
   * Opens the service's feed, or returns null (and says why, once) when the
   * transport refuses it: the worker then runs without it, as before.
   */
  static async open(transport: Transport, serviceName: string, log: Logger): Promise<SettledFeed | null> {
    const topic = settledTopic(serviceName);
    let producer: Producer | null = null;
    try {
      producer = await transport.createProducer(topic);
      const id = randomUUID();
      const consumer = await transport.subscribe({ topic, subscription: `sheaf-settled-${id}`, maxUnacked: 1000, durable: false });
      return new SettledFeed(id, producer, consumer, log.child({ settledFeed: topic }));
    } catch (error) {
      await producer?.close().catch(() => undefined);
      log.warn(
        { err: error, topic },
        `settled attempts are not shared with other workers (${topic} could not be opened; the worker needs produce and consume on it): ` +
          'copies of tasks another worker settled may run again after a broker loses acks',
      );
      return null;
    }
  }

  /** Starts reading other workers' announcements into `remember`. */
  start(remember: (attempt: SettledAttemptTuple) => void): void {
    this.reading ??= this.read(remember);
  }

  /**
   * Announces an attempt whose outcome is durable; sent with the others of
   * the next `FLUSH_INTERVAL_MS`, or at the end of this turn (with those
   * pending, so a batch's settlements still travel together) when `now`.
   * The worker says `now` for a failed attempt (retried, isolated,
   * dead-lettered): its next attempt is a delayed message, and the broker
   * can hand one delayed message to two workers at once; every millisecond
   * sooner that the other worker knows the attempt is settled is a copy
   * less that runs there and goes on through every later retry beside the
   * original. Failures are the rare path, so this costs a message per
   * failed batch only while batches fail.
   */
  announce(attempt: SettledAttemptTuple, now = false): void {
    const [taskId, retrySequence, retryIndex, isolationStep, nextGroup] = attempt;
    if (this.state.kind !== 'open' || taskId.length > MAX_SHARED_TASK_ID_LENGTH) return;
    // A group too long for readers to accept (never one of Sheaf's) is left out, not the attempt.
    const tooLong = nextGroup !== undefined && nextGroup.length > MAX_SHARED_GROUP_LENGTH;
    this.pending.push(tooLong ? [taskId, retrySequence, retryIndex, isolationStep] : attempt);
    if (this.pending.length >= MAX_ATTEMPTS_PER_MESSAGE) this.flush();
    else if (now) {
      if (!this.flushThisTurn) {
        this.flushThisTurn = true;
        queueMicrotask(() => {
          this.flushThisTurn = false;
          this.flush();
        });
      }
    } else if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => this.flush(), FLUSH_INTERVAL_MS);
      this.flushTimer.unref();
    }
  }

  /** Sends what is pending, waits a second at most for sends under way, stops reading. Idempotent. */
  async close(): Promise<void> {
    if (this.state.kind !== 'open') return;
    this.flush();
    this.state = { kind: 'closing' };
    await within(Promise.all(this.sends), CLOSE_WAIT_MS);
    this.stop.abort();
    await this.consumer.close().catch(() => undefined);
    await this.reading;
    await this.producer.close().catch(() => undefined);
    if (this.notAnnounced > 0) this.log.debug({ notAnnounced: this.notAnnounced }, 'settled attempts not announced');
    this.state = { kind: 'closed' };
  }

  private flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    const attempts = this.pending;
    if (attempts.length === 0) return;
    this.pending = [];
    if (this.sends.size >= MAX_SENDS_IN_FLIGHT) {
      // The broker is slow or away: the hint is worth less than the memory and the wait.
      this.notAnnounced += attempts.length;
      return;
    }
    const sent: Promise<void> = this.producer
      .send({ payload: encodeSettled(attempts), properties: { [SENDER_PROPERTY]: this.id } })
      .then(
        () => undefined,
        (error: unknown) => {
          this.notAnnounced += attempts.length;
          this.log.debug({ err: error, attempts: attempts.length }, 'announcing settled attempts failed');
        },
      )
      .finally(() => this.sends.delete(sent));
    this.sends.add(sent);
  }

  private async read(remember: (attempt: SettledAttemptTuple) => void): Promise<void> {
    for (;;) {
      let messages;
      try {
        messages = await this.consumer.receiveMany(100, this.stop.signal);
      } catch (error) {
        // Closing (an abort, or the consumer closed); anything else stops the hint, not the worker.
        if (!this.stop.signal.aborted && !isAbortError(error)) {
          this.log.warn({ err: error }, 'stopped reading settled attempts of other workers');
        }
        return;
      }
      for (const message of messages) {
        if (message.properties[SENDER_PROPERTY] === this.id) continue;
        const decoded = decodeSettled(message.payload);
        if ('problem' in decoded) this.ignore(decoded.problem);
        else for (const attempt of decoded.attempts) remember(attempt);
      }
      await this.consumer.ackAll(messages).catch(() => undefined);
    }
  }

  /** A message no worker of this version wrote: ignored, and said (at most once a minute). */
  private ignore(problem: string): void {
    this.unreadable += 1;
    const now = Date.now();
    if (now - this.lastWarnedAt < WARN_INTERVAL_MS) return;
    this.lastWarnedAt = now;
    this.log.warn({ ignored: this.unreadable, problem }, 'ignored messages on the settled-attempts topic that are not settled attempts');
  }
}
