/**
 * Exponential backoff with jitter, for reconnects: 100 ms doubling up to
 * `maxMs`, each wait drawn between half its ceiling and the ceiling.
 *
 * The default ceiling, 10 s, is what bounds the stall after a broker dies
 * beyond the broker's metadata session timeout: until that session expires
 * (30 s by default) lookups still name the dead broker, so every reconnect
 * before then fails, and the first one after it comes at most one wait
 * later. The Java client waits up to 60 s; a lower ceiling costs a lookup
 * and a refused connection every 5-10 s per producer or consumer of a lost
 * broker, which the surviving brokers answer from their metadata cache
 * (docs/decisions.md, "Reconnect backoff and send timeout").
 */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly initialMs = 100,
    private readonly maxMs = 10_000,
  ) {}

  /** The next wait in ms: 50-100 ms, then 100-200 ms, ... up to `maxMs / 2`-`maxMs`. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.initialMs * 2 ** this.attempt);
    this.attempt += 1;
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  /** Starts again from the shortest wait, after a connection that worked. */
  reset(): void {
    this.attempt = 0;
  }
}
