/**
 * Execution slots: at most `size` executions at once, and at most
 * `perKey` of them for one batch key, so that a hung or slow key cannot take
 * every slot. Waiters are served in arrival order, skipping those whose key
 * is at its limit (they keep their place until a slot of their key frees).
 */
export class Slots {
  private running = 0;
  private readonly runningByKey = new Map<string | null, number>();
  private readonly waiters: Array<{ readonly key: string | null; readonly settle: (started: boolean) => void }> = [];

  constructor(
    readonly size: number,
    readonly perKey: number = size,
  ) {}

  get inUse(): number {
    return this.running;
  }

  /** Resolves true once a slot is taken for `key`; false if the wait was withdrawn (no slot taken). */
  acquire(key: string | null): Promise<boolean> {
    // Whoever still waits cannot start (a release starts the first that can), so a key that fits goes first.
    if (this.fits(key)) {
      this.take(key);
      return Promise.resolve(true);
    }
    return new Promise((settle) => this.waiters.push({ key, settle }));
  }

  release(key: string | null): void {
    this.running -= 1;
    const left = (this.runningByKey.get(key) ?? 1) - 1;
    // Idle keys leave nothing behind.
    if (left === 0) this.runningByKey.delete(key);
    else this.runningByKey.set(key, left);
    const index = this.waiters.findIndex((w) => this.fits(w.key));
    if (index < 0) return;
    const [next] = this.waiters.splice(index, 1);
    this.take(next!.key);
    next!.settle(true);
  }

  /** Whether an execution of this key would start now. */
  fits(key: string | null): boolean {
    return this.running < this.size && !this.saturated(key);
  }

  /** Whether the key runs `perKey` executions: its waiters start only when one of them ends. */
  saturated(key: string | null): boolean {
    return (this.runningByKey.get(key) ?? 0) >= this.perKey;
  }

  /** Executions of this key running now. */
  runningFor(key: string | null): number {
    return this.runningByKey.get(key) ?? 0;
  }

  /** Withdraws the waiters whose key `matches` (their `acquire` resolves false); returns how many. */
  withdraw(matches: (key: string | null) => boolean): number {
    let withdrawn = 0;
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const waiter = this.waiters[i]!;
      if (!matches(waiter.key)) continue;
      this.waiters.splice(i, 1);
      waiter.settle(false);
      withdrawn += 1;
    }
    return withdrawn;
  }

  /** The keys that have waiters. */
  waitingKeys(): Set<string | null> {
    return new Set(this.waiters.map((w) => w.key));
  }

  private take(key: string | null): void {
    this.running += 1;
    this.runningByKey.set(key, (this.runningByKey.get(key) ?? 0) + 1);
  }
}
