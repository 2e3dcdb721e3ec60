/**
 * The attempts a worker settled recently, so that a second copy of one (a
 * broker redelivery after a lost ack, a retry message delivered twice, a
 * client re-send of the same task id) is acked without running again. An
 * attempt is a task's retry sequence and retry index: a retry is a new
 * attempt, a copy of the same retry is not, and a copy of an attempt older
 * than one already settled is stale, a twin too.
 *
 * Copies of one attempt that ran on two workers at once (the broker hands
 * one delayed message to both now and then) each publish a next attempt, and
 * the two would go on side by side through every later step. So a failed
 * attempt is remembered with the isolation group of the next attempt its
 * worker published (`nextGroup`); once two are known for the same attempt,
 * only the next attempt in the lowest group runs, and the others are twins.
 * Every worker that hears both settlements picks the same one, and it is
 * durable (announced only after it was published), so nothing is lost.
 *
 * One entry per task id (its latest settled attempt), bounded both ways: at
 * most `maxTasks` task ids (the oldest go first) and none older than
 * `maxSeconds` (about 21 MB at 100,000 UUID task ids). Past either bound a twin
 * runs again, as before (at least once); the client ignores a second result.
 */
import type { Clock } from '../util/clock.js';
import { Fifo } from '../util/fifo.js';
import type { TaskEnvelope } from '../wire/envelopes.js';
import type { SettledAttemptTuple } from '../wire/settled-envelope.js';

type Attempt = Pick<TaskEnvelope, 'taskId' | 'retrySequence' | 'retryIndex' | 'isolation'>;

/** Next groups kept per attempt at most: two copies make a fork; more are as rare as a third copy. */
const MAX_NEXT_GROUPS = 4;
/** Most attempts succeed and publish no next one: one shared empty list, nothing allocated on the hot path. */
const NO_GROUPS: readonly string[] = [];

interface Settled {
  readonly retrySequence: number;
  readonly retryIndex: number;
  readonly isolationStep: number;
  /** The isolation groups of the next attempts published after this one (one per copy that ran). */
  readonly nextGroups: readonly string[];
  readonly at: number;
  /** Which entry of `order` is this record's: older entries of the task id are left behind by a later settlement. */
  readonly seq: number;
}

/** One settlement, in the order they happened. */
interface OrderEntry {
  readonly taskId: string;
  readonly seq: number;
}

export class SettledAttempts {
  /** Task id → its latest settled attempt. */
  private readonly latest = new Map<string, Settled>();
  /**
   * Settlements, oldest first, to forget the oldest in O(1). Not the Map's
   * own order: deleting from the front of a large Map leaves deleted slots
   * that every later walk from the front skips again, which made a full
   * cache cost a fifth of the in-memory end-to-end throughput.
   */
  private readonly order = new Fifo<OrderEntry>();
  private seq = 0;

  constructor(
    private readonly maxTasks: number,
    private readonly maxAgeMs: number,
    private readonly clock: Clock,
  ) {}

  get size(): number {
    return this.latest.size;
  }

  /** An attempt this worker settled; `nextGroup`: the isolation group of the next attempt it published, if any. */
  add(attempt: Attempt, nextGroup?: string): void {
    this.remember(attempt.taskId, orderOf(attempt), nextGroup);
  }

  /** An attempt another worker settled (`SettledFeed`). */
  addShared([taskId, retrySequence, retryIndex, isolationStep, nextGroup]: SettledAttemptTuple): void {
    this.remember(taskId, { retrySequence, retryIndex, isolationStep }, nextGroup);
  }

  /**
   * Whether this attempt, or a later one of its task, was settled (here or,
   * as announced, elsewhere); or whether it is the next attempt published by
   * a copy that lost to another (see the top of this file).
   */
  settled(attempt: Attempt): boolean {
    this.expire();
    const known = this.latest.get(attempt.taskId);
    if (known === undefined) return false;
    if (compare(orderOf(attempt), known) <= 0) return true;
    const group = attempt.isolation?.group;
    if (group === undefined || known.nextGroups.length < 2 || !known.nextGroups.includes(group)) return false;
    return known.nextGroups.some((other) => other < group);
  }

  private remember(taskId: string, order: Order, nextGroup: string | undefined): void {
    const known = this.latest.get(taskId);
    const latest = known && compare(known, order) > 0 ? known : order;
    let nextGroups = known && compare(known, order) >= 0 ? known.nextGroups : NO_GROUPS;
    if (nextGroup !== undefined && latest === order && !nextGroups.includes(nextGroup) && nextGroups.length < MAX_NEXT_GROUPS) {
      nextGroups = [...nextGroups, nextGroup];
    }
    const seq = ++this.seq;
    this.latest.set(taskId, {
      retrySequence: latest.retrySequence,
      retryIndex: latest.retryIndex,
      isolationStep: latest.isolationStep,
      nextGroups,
      at: this.clock.now(),
      seq,
    });
    this.order.push({ taskId, seq });
    // Entries left behind by a task id settled again count too, so the queue stays within twice the bound.
    while (this.latest.size > this.maxTasks || this.order.length > 2 * this.maxTasks) this.forgetOldest();
  }

  private expire(): void {
    const oldest = this.clock.now() - this.maxAgeMs;
    for (;;) {
      const entry = this.order.peek();
      if (!entry) return;
      const record = this.latest.get(entry.taskId);
      if (record && record.seq === entry.seq && record.at > oldest) return;
      this.forgetOldest();
    }
  }

  private forgetOldest(): void {
    const entry = this.order.shift();
    if (!entry) return;
    if (this.latest.get(entry.taskId)?.seq === entry.seq) this.latest.delete(entry.taskId);
  }
}

type Order = Pick<Settled, 'retrySequence' | 'retryIndex' | 'isolationStep'>;

function orderOf(attempt: Attempt): Order {
  return { retrySequence: attempt.retrySequence, retryIndex: attempt.retryIndex, isolationStep: attempt.isolation?.step ?? 0 };
}

/** Attempts in the order they happen: retry sequence (dead-letter replays), then retry index, then isolation step. */
function compare(a: Order, b: Order): number {
  return a.retrySequence - b.retrySequence || a.retryIndex - b.retryIndex || a.isolationStep - b.isolationStep;
}
