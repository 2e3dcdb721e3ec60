/**
 * The attempts a worker holds now (received, not yet settled), so that a
 * copy of one that arrives meanwhile (the broker redelivers what a lost
 * connection left unacked, while the worker still runs or settles the
 * original) does not run a second time: it waits beside the original and is
 * settled with its outcome (acked as a twin when the outcome is durable,
 * handed back with it otherwise). Bounded by what the worker holds
 * (`maxUnacked`). On the hot path: one map lookup and one insert per task,
 * nothing allocated unless a copy arrives.
 */
import type { ReceivedMessage } from '../transport/transport.js';
import type { TaskEnvelope } from '../wire/envelopes.js';

type Attempt = Pick<TaskEnvelope, 'taskId' | 'retrySequence' | 'retryIndex' | 'isolation'>;

export class HeldAttempts {
  /** Task id → the attempt held. */
  private readonly held = new Map<string, Attempt>();
  /** Task id → the copies waiting for the held attempt (only for task ids that have some). */
  private readonly copies = new Map<string, ReceivedMessage[]>();

  get size(): number {
    return this.held.size;
  }

  /**
   * Registers the attempt as held and returns true, or, if this very attempt
   * is held already, keeps `message` as its copy and returns false (the copy
   * must not run). A different attempt of a held task id is not a copy: it
   * runs (and is not tracked, the first holder keeps the record).
   */
  hold(attempt: Attempt, message: ReceivedMessage): boolean {
    const held = this.held.get(attempt.taskId);
    if (held === undefined) {
      this.held.set(attempt.taskId, attempt);
      return true;
    }
    if (!sameAttempt(held, attempt)) return true;
    const copies = this.copies.get(attempt.taskId);
    if (copies) copies.push(message);
    else this.copies.set(attempt.taskId, [message]);
    return false;
  }

  /** The attempt was settled: forgets it and returns the copies that waited for its outcome. */
  release(attempt: Attempt): readonly ReceivedMessage[] {
    const held = this.held.get(attempt.taskId);
    if (held === undefined || !sameAttempt(held, attempt)) return NONE;
    this.held.delete(attempt.taskId);
    if (this.copies.size === 0) return NONE;
    const copies = this.copies.get(attempt.taskId);
    if (!copies) return NONE;
    this.copies.delete(attempt.taskId);
    return copies;
  }
}

const NONE: readonly ReceivedMessage[] = [];

function sameAttempt(a: Attempt, b: Attempt): boolean {
  return a.retrySequence === b.retrySequence && a.retryIndex === b.retryIndex && (a.isolation?.step ?? 0) === (b.isolation?.step ?? 0);
}
