/**
 * Which batch keys are stuck: a key that runs all it may
 * (`maxConcurrencyPerKey`) and whose slots did not change (no execution
 * started or ended) for `maxSeconds` is hung or slow, and its slots will not
 * free soon. Batches of such a key are better given back to the broker than
 * kept waiting, when other keys are active: kept, they fill the in-flight
 * room (the worker stops receiving at `maxUnacked`) and other keys' tasks
 * wait in the topic until one of that key's executions ends.
 *
 * Fast keys never qualify (their slots change all the time), and a worker
 * that sees one key only keeps its batches: giving them back would only
 * bring the same key back.
 */
import type { Clock } from '../util/clock.js';
import type { Slots } from './slots.js';

/** At most this many keys are remembered as seen; past it the memory starts again (keys are user data). */
const MAX_KEYS_SEEN = 10_000;

export class StuckKeys {
  /** When a task of each batch key was last accepted (pruned when read). */
  private readonly keysSeen = new Map<string | null, number>();
  private lastKeySeen: string | null | undefined = undefined;
  /** When a slot of each running key was last taken or freed. */
  private readonly slotsChangedAt = new Map<string | null, number>();

  constructor(
    private readonly slots: Slots,
    private readonly clock: Clock,
    /** `maxSeconds`, in milliseconds: how long a key's slots stand still before it counts as stuck. */
    private readonly stillMs: number,
  ) {}

  /** A task of `key` was accepted. Recorded once per change of key (tasks of one key mostly arrive together). */
  seen(key: string | null): void {
    if (key === this.lastKeySeen) return;
    this.lastKeySeen = key;
    if (this.keysSeen.size >= MAX_KEYS_SEEN) this.keysSeen.clear();
    this.keysSeen.set(key, this.clock.now());
  }

  /** A slot of `key` was taken or freed; idle keys leave nothing behind. */
  slotChanged(key: string | null): void {
    if (this.slots.runningFor(key) === 0) this.slotsChangedAt.delete(key);
    else this.slotsChangedAt.set(key, this.clock.now());
  }

  /** Whether a batch of `key` should be given back rather than wait for a slot (see the top of this file). */
  shouldDefer(key: string | null): boolean {
    if (!this.slots.saturated(key)) return false;
    const now = this.clock.now();
    if (now - (this.slotsChangedAt.get(key) ?? now) < this.stillMs) return false;
    // Other keys count as active when one was accepted lately: the last 10 s, or 10 × maxSeconds.
    const recent = now - Math.max(10_000, 10 * this.stillMs);
    for (const [seen, at] of this.keysSeen) {
      if (at < recent) this.keysSeen.delete(seen);
      else if (seen !== key && !this.slots.saturated(seen)) return true;
    }
    return false;
  }
}
