/**
 * Execution slots: at most `size` executions at once, and at most
 * `perKey` of them for one batch key, so that a hung or slow key cannot take
 * every slot. Waiters are served in arrival order, skipping those whose key
 * is at its limit (they keep their place until a slot of their key frees).
 */
export class Slots {
  private running = 0;
  private readonly runningByKey = new Map<string | null, number>();
  private readonly waiters: Array<{ readonly key: string | null; readonly start: () => void }> = [];

  constructor(
    readonly size: number,
    readonly perKey: number = size,
  ) {}

  get inUse(): number {
    return this.running;
  }

  acquire(key: string | null): Promise<void> {
    // Whoever still waits cannot start (a release starts the first that can), so a key that fits goes first.
    if (this.fits(key)) {
      this.take(key);
      return Promise.resolve();
    }
    return new Promise((start) => this.waiters.push({ key, start }));
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
    next!.start();
  }

  /** Whether an execution of this key would start now. */
  fits(key: string | null): boolean {
    return this.running < this.size && (this.runningByKey.get(key) ?? 0) < this.perKey;
  }

  private take(key: string | null): void {
    this.running += 1;
    this.runningByKey.set(key, (this.runningByKey.get(key) ?? 0) + 1);
  }
}
