/**
 * Many waits with one and the same timeout, on one timer: entries are added
 * in deadline order (now + the timeout), so only the oldest can be due. A
 * timer per wait costs an allocation and a timer-list insert each; on hot
 * paths (every dispatch) that showed up in profiles.
 */
export class Deadlines {
  /** Insertion order is deadline order. */
  private readonly waiting = new Map<object, { readonly at: number; readonly expire: () => void }>();
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly timeoutMs: number) {}

  /** Calls `expire` after the timeout unless `done()` is called first. */
  add(expire: () => void): { done(): void } {
    const key = {};
    this.waiting.set(key, { at: Date.now() + this.timeoutMs, expire });
    this.arm();
    return { done: () => void this.waiting.delete(key) };
  }

  /** Races `work` against the timeout; `work` itself goes on if it loses. */
  race<T>(work: Promise<T>, timeoutError: () => Error): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const entry = this.add(() => reject(timeoutError()));
      work.then(
        (value) => {
          entry.done();
          resolve(value);
        },
        (error: unknown) => {
          entry.done();
          reject(error);
        },
      );
    });
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.waiting.clear();
  }

  private arm(): void {
    if (this.timer) return;
    const oldest = this.waiting.values().next();
    if (oldest.done) return;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        const now = Date.now();
        for (const [key, entry] of this.waiting) {
          if (entry.at > now) break;
          this.waiting.delete(key);
          entry.expire();
        }
        this.arm();
      },
      Math.max(0, oldest.value.at - Date.now()),
    );
  }
}
