/**
 * The batch buffer: one open aggregate per (method, batch key, isolation
 * group), flushed into a batch for one of six named reasons.
 *
 *   flush reason   when                                              trades
 *   ------------   -----------------------------------------------  ---------------------------------------
 *   maxMessages    the aggregate holds `maxMessages` tasks           full batches: best throughput
 *   maxBytes       the next task would pass `maxBytes` (it then      bounds what one batch call carries;
 *                  opens the next aggregate), or the aggregate       a task larger than maxBytes alone
 *                  reached it; a lone oversized task is flushed      forms a batch of its own
 *                  as a batch of its own
 *   maxSeconds     `maxSeconds` passed since the aggregate's first   bounds latency: no task waits longer,
 *                  task arrived                                      whatever the mix of keys
 *   isolated       an isolation group (part of a batch that failed   runs the split at once instead of waiting
 *                  as a whole, retried apart) holds all its tasks    for the clock: the group is complete
 *   backpressure   the worker holds `maxUnacked` tasks, no batch     progress over fill: when every task held
 *                  is running or waiting for a slot, and the         waits in an aggregate, waiting for the
 *                  fullest aggregates are flushed to free room       clock would idle the worker
 *   shutdown       the worker drains                                 nothing left behind
 *
 * Latency against throughput: a larger `maxMessages` or `maxBytes` makes
 * fewer, fuller batch calls; `maxSeconds` caps what a task pays for that when
 * traffic for its key is thin. Under load batches fill before the timer; at
 * low load every task waits up to `maxSeconds`.
 *
 * Aggregate lifecycle (there is no "empty" state: an aggregate exists only
 * while it holds tasks, so idle keys leave no state behind):
 *
 *   (none) --add--> open --[maxMessages | maxBytes | maxSeconds | backpressure | shutdown]--> flushed (removed)
 *
 * Buffer lifecycle: `accepting` --close()--> `closed` (every open aggregate is
 * flushed with reason `shutdown`; adding afterwards is an error).
 *
 * Time comes from an injected clock; the buffer holds one timer per open
 * aggregate and cancels it on any earlier flush.
 */
import { LifecycleError } from '../errors.js';
import type { Clock, TimerHandle } from '../util/clock.js';

export type FlushReason = 'maxMessages' | 'maxSeconds' | 'maxBytes' | 'backpressure' | 'isolated' | 'shutdown';

export interface BatchLimits {
  readonly maxMessages: number;
  readonly maxSeconds: number;
  /** Undefined: no byte limit. */
  readonly maxBytes: number | undefined;
}

/** What a batch is grouped by. */
export interface BatchGroup {
  readonly method: string;
  readonly batchKey: string | null;
  /**
   * Set for tasks retried apart after their batch failed as a whole: they are
   * batched only with their own group, flushed once its `size` tasks are in.
   */
  readonly isolation?: { readonly id: string; readonly size: number };
}

export interface Sized {
  readonly bytes: number;
}

export interface FlushedBatch<T extends Sized> {
  readonly group: BatchGroup;
  readonly items: readonly T[];
  readonly bytes: number;
  readonly reason: FlushReason;
  /** When the first item arrived, and when the batch was flushed (clock milliseconds). */
  readonly openedAt: number;
  readonly flushedAt: number;
}

interface OpenAggregate<T extends Sized> {
  readonly group: BatchGroup;
  readonly items: T[];
  bytes: number;
  readonly openedAt: number;
  readonly timer: TimerHandle;
}

type BufferState = 'accepting' | 'closed';

export class BatchBuffer<T extends Sized> {
  private readonly open = new Map<string, OpenAggregate<T>>();
  private state: BufferState = 'accepting';
  private buffered = 0;

  constructor(
    private readonly limits: BatchLimits,
    private readonly onFlush: (batch: FlushedBatch<T>) => void,
    private readonly clock: Clock,
  ) {}

  /** Open aggregates right now (one per active key). */
  get openAggregates(): number {
    return this.open.size;
  }

  /** Items waiting in open aggregates. */
  get bufferedItems(): number {
    return this.buffered;
  }

  add(group: BatchGroup, item: T): void {
    if (this.state !== 'accepting') {
      throw new LifecycleError('the batch buffer is closed: no task may be added after shutdown');
    }
    const key = groupKey(group);
    const { maxBytes, maxMessages } = this.limits;
    let aggregate = this.open.get(key);
    if (aggregate && maxBytes !== undefined && aggregate.bytes + item.bytes > maxBytes) {
      this.flush(key, aggregate, 'maxBytes');
      aggregate = undefined;
    }
    aggregate ??= this.openAggregate(key, group);
    aggregate.items.push(item);
    aggregate.bytes += item.bytes;
    this.buffered += 1;
    if (aggregate.items.length >= maxMessages) this.flush(key, aggregate, 'maxMessages');
    else if (group.isolation && aggregate.items.length >= group.isolation.size) this.flush(key, aggregate, 'isolated');
    else if (maxBytes !== undefined && aggregate.bytes >= maxBytes) this.flush(key, aggregate, 'maxBytes');
  }

  /**
   * Flushes up to `count` of the fullest open aggregates now, with reason
   * `backpressure`, among those `eligible` accepts (asked again before each
   * pick); returns how many. For a worker that cannot receive more while
   * everything it holds waits in aggregates.
   */
  flushFullest(count: number, eligible: (group: BatchGroup) => boolean = () => true): number {
    let flushed = 0;
    while (flushed < count) {
      let fullest: [string, OpenAggregate<T>] | undefined;
      for (const entry of this.open) {
        if ((!fullest || entry[1].items.length > fullest[1].items.length) && eligible(entry[1].group)) fullest = entry;
      }
      if (!fullest) break;
      this.flush(fullest[0], fullest[1], 'backpressure');
      flushed += 1;
    }
    return flushed;
  }

  /** Flushes every open aggregate with reason `shutdown` and refuses further items. */
  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    for (const [key, aggregate] of [...this.open]) this.flush(key, aggregate, 'shutdown');
  }

  private openAggregate(key: string, group: BatchGroup): OpenAggregate<T> {
    const timer = this.clock.setTimer(this.limits.maxSeconds * 1000, () => {
      const current = this.open.get(key);
      if (current && current.timer === timer) this.flush(key, current, 'maxSeconds');
    });
    const aggregate: OpenAggregate<T> = { group, items: [], bytes: 0, openedAt: this.clock.now(), timer };
    this.open.set(key, aggregate);
    return aggregate;
  }

  private flush(key: string, aggregate: OpenAggregate<T>, reason: FlushReason): void {
    this.clock.clearTimer(aggregate.timer);
    this.open.delete(key);
    this.buffered -= aggregate.items.length;
    this.onFlush({
      group: aggregate.group,
      items: aggregate.items,
      bytes: aggregate.bytes,
      reason,
      openedAt: aggregate.openedAt,
      flushedAt: this.clock.now(),
    });
  }
}

/** A batch key of null (no key) and "" (the empty key) are different groups; so is each isolation group. */
function groupKey(group: BatchGroup): string {
  const key = group.batchKey === null ? `${group.method}\u0000` : `${group.method}\u0000=${group.batchKey}`;
  return group.isolation ? `${key}\u0000${group.isolation.id}` : key;
}
