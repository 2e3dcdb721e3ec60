/**
 * The attempts a worker settled recently, so that a second copy of one (a
 * broker redelivery after a lost ack, a retry message delivered twice, a
 * client re-send of the same task id) is acked without running again. An
 * attempt is a task id with its retry sequence and retry index: a retry is a
 * new attempt, a copy of the same retry is not.
 *
 * Bounded both ways: at most `maxTasks` entries (the oldest go first) and none
 * older than `maxSeconds`. Past either bound a twin runs again, as before
 * (at least once); the client ignores a second result.
 */
import type { Clock } from '../util/clock.js';
import type { TaskEnvelope } from '../wire/envelopes.js';

/** The identity of one attempt of a task. */
export function attemptOf(task: Pick<TaskEnvelope, 'taskId' | 'retrySequence' | 'retryIndex'>): string {
  return `${task.taskId}\u0000${task.retrySequence}\u0000${task.retryIndex}`;
}

export class SettledAttempts {
  /** Attempt → when it was settled; Map order is settlement order, so the oldest are at the front. */
  private readonly settledAt = new Map<string, number>();

  constructor(
    private readonly maxTasks: number,
    private readonly maxAgeMs: number,
    private readonly clock: Clock,
  ) {}

  get size(): number {
    return this.settledAt.size;
  }

  add(attempt: string): void {
    this.settledAt.delete(attempt);
    this.settledAt.set(attempt, this.clock.now());
    while (this.settledAt.size > this.maxTasks) this.settledAt.delete(this.settledAt.keys().next().value!);
  }

  has(attempt: string): boolean {
    this.expire();
    return this.settledAt.has(attempt);
  }

  private expire(): void {
    const oldest = this.clock.now() - this.maxAgeMs;
    for (const [attempt, at] of this.settledAt) {
      if (at > oldest) return;
      this.settledAt.delete(attempt);
    }
  }
}
