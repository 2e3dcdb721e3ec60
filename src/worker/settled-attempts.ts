/**
 * The attempts a worker settled recently, so that a second copy of one (a
 * broker redelivery after a lost ack, a retry message delivered twice, a
 * client re-send of the same task id) is acked without running again. An
 * attempt is a task's retry sequence and retry index: a retry is a new
 * attempt, a copy of the same retry is not, and a copy of an attempt older
 * than one already settled is stale, a twin too.
 *
 * One entry per task id (its latest settled attempt), bounded both ways: at
 * most `maxTasks` task ids (the oldest go first) and none older than
 * `maxSeconds` (about 15 MB at 100,000 task ids). Past either bound a twin
 * runs again, as before (at least once); the client ignores a second result.
 */
import type { Clock } from '../util/clock.js';
import type { TaskEnvelope } from '../wire/envelopes.js';

type Attempt = Pick<TaskEnvelope, 'taskId' | 'retrySequence' | 'retryIndex' | 'isolation'>;

interface Settled {
  readonly retrySequence: number;
  readonly retryIndex: number;
  readonly isolationStep: number;
  readonly at: number;
}

export class SettledAttempts {
  /** Task id → its latest settled attempt; Map order is settlement order, so the oldest are at the front. */
  private readonly latest = new Map<string, Settled>();

  constructor(
    private readonly maxTasks: number,
    private readonly maxAgeMs: number,
    private readonly clock: Clock,
  ) {}

  get size(): number {
    return this.latest.size;
  }

  add(attempt: Attempt): void {
    const known = this.latest.get(attempt.taskId);
    this.latest.delete(attempt.taskId);
    const latest = known && compare(known, orderOf(attempt)) > 0 ? known : orderOf(attempt);
    this.latest.set(attempt.taskId, { ...latest, at: this.clock.now() });
    while (this.latest.size > this.maxTasks) this.latest.delete(this.latest.keys().next().value!);
  }

  /** Whether this attempt, or a later one of its task, was settled here. */
  settled(attempt: Attempt): boolean {
    this.expire();
    const known = this.latest.get(attempt.taskId);
    return known !== undefined && compare(orderOf(attempt), known) <= 0;
  }

  private expire(): void {
    const oldest = this.clock.now() - this.maxAgeMs;
    for (const [taskId, settled] of this.latest) {
      if (settled.at > oldest) return;
      this.latest.delete(taskId);
    }
  }
}

type Order = Omit<Settled, 'at'>;

function orderOf(attempt: Attempt): Order {
  return { retrySequence: attempt.retrySequence, retryIndex: attempt.retryIndex, isolationStep: attempt.isolation?.step ?? 0 };
}

/** Attempts in the order they happen: retry sequence (dead-letter replays), then retry index, then isolation step. */
function compare(a: Order, b: Order): number {
  return a.retrySequence - b.retrySequence || a.retryIndex - b.retryIndex || a.isolationStep - b.isolationStep;
}
