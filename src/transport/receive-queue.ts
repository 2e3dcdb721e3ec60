/**
 * Messages a consumer has been given and the application has not yet taken,
 * and the `receive()` calls waiting for them. Shared by every transport's
 * consumer so that abort and close behave the same everywhere.
 */
import { Fifo } from '../util/fifo.js';
import { abortError } from './transport.js';

interface Waiter<T> {
  resolve(item: T): void;
  reject(error: unknown): void;
}

export class ReceiveQueue<T> {
  private readonly ready = new Fifo<T>();
  private readonly waiters: Waiter<T>[] = [];
  private closedWith: (() => Error) | null = null;

  /** Hands the item to the oldest waiting `receive()`, or keeps it for the next one. */
  push(item: T): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve(item);
    else this.ready.push(item);
  }

  /** The next item; rejects with `AbortError` on abort (nothing is lost) and with the close error once closed. */
  receive(signal?: AbortSignal): Promise<T> {
    if (this.closedWith) return Promise.reject(this.closedWith());
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (this.ready.length > 0) return Promise.resolve(this.ready.shift()!);
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
        reject(abortError(signal!));
      };
      const waiter: Waiter<T> = {
        resolve: (item) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(item);
        },
        reject: (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /**
   * Up to `max` items at once: what is ready now, or else the next item plus
   * whatever arrived with it. One promise for many items, where a loop of
   * `receive()` makes one per item (the consume hot path). Rejects as
   * `receive()` does.
   */
  receiveMany(max: number, signal?: AbortSignal): Promise<T[]> {
    if (this.ready.length > 0 && !this.closedWith && !signal?.aborted) return Promise.resolve(this.take(Math.max(1, max)));
    // Items pushed in the same turn as the first one are in `ready` by the time this continuation runs.
    return this.receive(signal).then((first) => {
      const items = this.take(max - 1);
      items.unshift(first);
      return items;
    });
  }

  /** Up to `max` items that are ready now, without waiting (none once closed). */
  take(max: number): T[] {
    const items: T[] = [];
    if (this.closedWith) return items;
    while (items.length < max && this.ready.length > 0) items.push(this.ready.shift()!);
    return items;
  }

  /** Removes waiting items that match (they will be delivered again by the broker). */
  removeWhere(match: (item: T) => boolean): number {
    return this.ready.removeWhere(match);
  }

  /** Rejects every waiting and later `receive()` with `error()`; returns the items nobody took. */
  close(error: () => Error): T[] {
    this.closedWith = error;
    for (const waiter of this.waiters.splice(0)) waiter.reject(error());
    return this.ready.drain();
  }
}
