import { Fifo } from '../util/fifo.js';

/** A counting semaphore with FIFO waiters: bounds executions running at once. */
export class Slots {
  private free: number;
  private readonly waiters = new Fifo<() => void>();

  constructor(readonly size: number) {
    this.free = size;
  }

  get inUse(): number {
    return this.size - this.free;
  }

  acquire(): Promise<void> {
    if (this.free > 0) {
      this.free -= 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.free += 1;
  }
}
