import { EventEmitter } from 'node:events';
import { describe, expect, test } from 'vitest';
import { DASHBOARD_JOBS, DashboardModel } from '../../src/telemetry/dashboard-model.js';
import type { BatchReport, TaskReport, WorkerEvents } from '../../src/worker/events.js';

function harness() {
  let now = 1_000_000;
  const events = new EventEmitter<WorkerEvents>();
  const source = {
    events,
    state: { status: 'running' },
    stats: () => ({ Mail: { inFlight: 3, openAggregates: 2, runningExecutions: 1 } }),
    batchLimits: () => ({ Mail: { maxMessages: 10 } }),
    jobTracker: () => ({ phase: 'active', epoch: 3 }),
    jobs: () =>
      [...Array(30).keys()].map((i) => ({
        jobId: `job-${i}`,
        name: undefined,
        total: 10,
        sealed: true,
        succeeded: i % 10,
        failed: 0,
        deadLettered: 0,
        pending: 10 - (i % 10),
        percent: (i % 10) * 10,
        startedAt: 1000 - i,
        finishedAt: null,
        stopped: false,
        cancelled: 0,
      })),
  };
  const model = new DashboardModel(source, 60_000, 10_000, () => now);
  const batch = (batchKey: string, size: number, flushReason: BatchReport['flushReason'] = 'maxMessages'): void => {
    events.emit('batch', {
      service: 'Mail',
      method: 'send',
      batchMethod: 'sendMany',
      batchKey,
      batchId: 'b',
      size,
      bytes: size * 10,
      flushReason,
      waitMs: 5,
      taskWaitsMs: [...Array(size).keys()].map((i) => i),
      durationMs: 1,
      succeeded: size,
      retried: 0,
      failed: 0,
      isolated: 0,
      isolation: null,
      contractErrors: [],
    });
    for (let i = 0; i < size; i++) {
      const report: TaskReport = {
        taskId: `t${i}`,
        service: 'Mail',
        method: 'send',
        batchKey,
        settlement: 'succeeded',
        poison: false,
        reason: null,
        attempts: 1,
      };
      events.emit('task', report);
    }
  };
  return { model, batch, advance: (ms: number) => (now += ms), events };
}

describe('the dashboard model', () => {
  test('tasks per second, fill, flush reasons, waits and the busiest keys over the window', () => {
    const { model, batch, advance } = harness();
    for (let s = 0; s < 10; s++) {
      batch('acme', 10);
      batch('globex', 5, 'maxSeconds');
      advance(1000);
    }
    const snap = model.snapshot();
    const [mail] = snap.methods;
    expect(mail).toMatchObject({ service: 'Mail', method: 'send', batches: 20, meanBatchSize: 7.5, fillRatio: 0.75, succeeded: 150 });
    expect(mail!.tasksPerSecond).toBe(15);
    expect(mail!.flushReasons).toEqual({ maxMessages: 10, maxSeconds: 10 });
    expect(mail!.sizeBuckets).toEqual({ '≤10': 10, '≤5': 10 });
    expect(mail!.waitP99Ms).toBe(9);
    expect(snap.busiestKeys.map((k) => [k.batchKey, k.tasks])).toEqual([
      ['acme', 100],
      ['globex', 50],
    ]);
    expect(snap.totals).toEqual({ received: 150, succeeded: 150, retried: 0, deadLettered: 0 });
    // The tracker's jobs, as it lists them (newest first), at most DASHBOARD_JOBS.
    expect(snap.jobs.map((j) => j.jobId)).toEqual([...Array(DASHBOARD_JOBS).keys()].map((i) => `job-${i}`));
    expect(snap.jobTracker).toEqual({ phase: 'active', epoch: 3 });
  });

  test('old seconds leave the window; many keys and tasks do not grow it without bound', () => {
    const { model, batch, advance } = harness();
    for (let k = 0; k < 5000; k++) batch(`key-${k}`, 1);
    const first = model.snapshot();
    expect(first.busiestKeys).toHaveLength(20);
    advance(61_000);
    batch('late', 2);
    const later = model.snapshot();
    expect(later.methods[0]!.batches).toBe(1);
    expect(later.busiestKeys.map((k) => k.batchKey)).toEqual(['late']);
    // Per second, at most 1,000 keys are kept; the snapshot's size follows.
    expect(JSON.stringify(first).length).toBeLessThan(20_000);
  });
});
