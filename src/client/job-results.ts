/**
 * The outcomes of a job's tasks as they arrive, for `job.results()`, on a
 * job created with `keepResults: true`. Only the process that dispatched
 * the tasks has their results (they come back on its client's result
 * topic), and only for tasks dispatched with a result (not
 * fire-and-forget): other jobs count outcomes, they do not keep them.
 *
 * Each outcome is kept until `results()` reads it: a reader that keeps up
 * holds memory for the tasks under way only; one that never reads holds
 * every result, which is why keeping them is asked for.
 */
import { Fifo } from '../util/fifo.js';
import type { TaskHandle } from './task-handle.js';

/** One task of a job, settled: what `job.results()` yields. */
export type JobTaskResult =
  | { readonly taskId: string; readonly index: number; readonly outcome: 'succeeded'; readonly value: unknown }
  /** Failed for good (`TaskFailedError`), cancelled, or no result within the client's result timeout. */
  | { readonly taskId: string; readonly index: number; readonly outcome: 'failed'; readonly error: Error };

/** The outcomes of one job's tasks, kept until read (see the top of this file). */
export class JobResults {
  private readonly ready = new Fifo<JobTaskResult>();
  /** Tasks followed whose result has not come yet. */
  private awaited = 0;
  private wake: (() => void) | null = null;
  private reading = false;

  /** Follows task `index`'s handle: its outcome is queued for `read` when it arrives. */
  follow(index: number, handle: TaskHandle<unknown>): void {
    this.awaited += 1;
    handle.result().then(
      (value) => this.push({ taskId: handle.id, index, outcome: 'succeeded', value }),
      (error: unknown) =>
        this.push({ taskId: handle.id, index, outcome: 'failed', error: error instanceof Error ? error : new Error(String(error)) }),
    );
  }

  /** Wakes a reader waiting for the end (the job was sealed, its dispatches done). */
  nudge(): void {
    this.wake?.();
  }

  /**
   * Yields each outcome once, in the order they arrive, and ends once
   * `complete()` says nothing more is dispatched and every followed task has
   * its outcome. One reader at a time.
   */
  async *read(complete: () => boolean): AsyncGenerator<JobTaskResult> {
    if (this.reading) throw new Error('job.results() is being read already: one reader at a time');
    this.reading = true;
    try {
      for (;;) {
        while (this.ready.length > 0) yield this.ready.shift()!;
        if (this.awaited === 0 && complete()) return;
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = null;
      }
    } finally {
      this.reading = false;
    }
  }

  private push(result: JobTaskResult): void {
    this.awaited -= 1;
    this.ready.push(result);
    this.wake?.();
  }
}
