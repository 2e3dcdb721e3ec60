/**
 * The attempts a worker holds now (received, not yet settled), so that a
 * copy of one that arrives meanwhile (the broker redelivers what a lost
 * connection left unacked, while the worker still runs or settles the
 * original) does not run a second time: it waits beside the original and is
 * settled with its outcome (acked as a twin when the outcome is durable,
 * handed back with it otherwise). Bounded by what the worker holds
 * (`maxUnacked`).
 */
import type { ReceivedMessage } from '../transport/transport.js';
import type { TaskEnvelope } from '../wire/envelopes.js';

type Attempt = Pick<TaskEnvelope, 'taskId' | 'retrySequence' | 'retryIndex' | 'isolation'>;

interface Held {
  readonly retrySequence: number;
  readonly retryIndex: number;
  readonly isolationStep: number;
  readonly copies: ReceivedMessage[];
}

export class HeldAttempts {
  private readonly held = new Map<string, Held>();

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
    if (!held) {
      this.held.set(attempt.taskId, { ...orderOf(attempt), copies: [] });
      return true;
    }
    if (!sameAttempt(held, attempt)) return true;
    held.copies.push(message);
    return false;
  }

  /** The attempt was settled: forgets it and returns the copies that waited for its outcome. */
  release(attempt: Attempt): ReceivedMessage[] {
    const held = this.held.get(attempt.taskId);
    if (!held || !sameAttempt(held, attempt)) return [];
    this.held.delete(attempt.taskId);
    return held.copies;
  }
}

function orderOf(attempt: Attempt): Omit<Held, 'copies'> {
  return { retrySequence: attempt.retrySequence, retryIndex: attempt.retryIndex, isolationStep: attempt.isolation?.step ?? 0 };
}

function sameAttempt(held: Omit<Held, 'copies'>, attempt: Attempt): boolean {
  const o = orderOf(attempt);
  return held.retrySequence === o.retrySequence && held.retryIndex === o.retryIndex && held.isolationStep === o.isolationStep;
}
