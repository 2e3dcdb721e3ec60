/**
 * What the live dashboard shows, computed from a worker's own events over a
 * sliding window (default 60 s): per service and method, tasks per second,
 * batch sizes and how full they were, flush reasons, how long tasks waited in
 * their aggregates (p50/p99), retries and dead letters; the busiest batch
 * keys of the last seconds; and the worker's in-flight figures.
 *
 * Memory is bounded by the window: old batch and task records are dropped on
 * every snapshot, whatever the number of keys.
 */
import type { BatchReport, TaskReport } from '../worker/events.js';

export interface DashboardSource {
  readonly events: {
    on(event: 'batch', listener: (report: BatchReport) => void): unknown;
    on(event: 'task', listener: (report: TaskReport) => void): unknown;
    off(event: 'batch', listener: (report: BatchReport) => void): unknown;
    off(event: 'task', listener: (report: TaskReport) => void): unknown;
  };
  stats(): Record<string, { inFlight: number; openAggregates: number; runningExecutions: number }>;
  batchLimits(): Record<string, { maxMessages: number }>;
  readonly state: { status: string };
}

export interface MethodFigures {
  readonly service: string;
  readonly method: string;
  readonly tasksPerSecond: number;
  readonly batches: number;
  /** Counts of batches by size bucket (label → count). */
  readonly sizeBuckets: Record<string, number>;
  readonly meanBatchSize: number;
  /** Mean of size / maxMessages. */
  readonly fillRatio: number;
  readonly flushReasons: Record<string, number>;
  readonly waitP50Ms: number;
  readonly waitP99Ms: number;
  readonly retried: number;
  readonly deadLettered: number;
  readonly succeeded: number;
}

export interface DashboardSnapshot {
  readonly at: number;
  readonly windowSeconds: number;
  readonly status: string;
  readonly services: Record<string, { inFlight: number; openAggregates: number; runningExecutions: number }>;
  readonly methods: MethodFigures[];
  /** The busiest batch keys over the last `busyWindowSeconds`, by tasks. */
  readonly busiestKeys: Array<{ service: string; method: string; batchKey: string; tasks: number }>;
  readonly totals: { received: number; succeeded: number; retried: number; deadLettered: number };
}

const SIZE_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

export class DashboardModel {
  private batches: Array<{ at: number; report: BatchReport }> = [];
  private tasks: Array<{ at: number; report: TaskReport }> = [];
  private readonly totals = { received: 0, succeeded: 0, retried: 0, deadLettered: 0 };
  private readonly onBatch = (report: BatchReport): void => {
    this.batches.push({ at: this.now(), report });
  };
  private readonly onTask = (report: TaskReport): void => {
    this.tasks.push({ at: this.now(), report });
    this.totals.received += report.settlement === 'redelivered' ? 0 : 1;
    if (report.settlement === 'succeeded') this.totals.succeeded += 1;
    if (report.settlement === 'retried') this.totals.retried += 1;
    if (report.settlement === 'failed') this.totals.deadLettered += 1;
  };

  constructor(
    private readonly source: DashboardSource,
    private readonly windowMs = 60_000,
    private readonly busyWindowMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {
    source.events.on('batch', this.onBatch);
    source.events.on('task', this.onTask);
  }

  close(): void {
    this.source.events.off('batch', this.onBatch);
    this.source.events.off('task', this.onTask);
  }

  snapshot(): DashboardSnapshot {
    const now = this.now();
    const since = now - this.windowMs;
    this.batches = this.batches.filter((b) => b.at >= since);
    this.tasks = this.tasks.filter((t) => t.at >= since);
    const seconds = Math.max(1, Math.min(this.windowMs, now - (this.batches[0]?.at ?? this.tasks[0]?.at ?? now)) / 1000);
    const limits = this.source.batchLimits();
    const methods = new Map<string, { batches: BatchReport[]; tasks: TaskReport[] }>();
    const slot = (service: string, method: string) => {
      const key = `${service}\u0000${method}`;
      let entry = methods.get(key);
      if (!entry) {
        entry = { batches: [], tasks: [] };
        methods.set(key, entry);
      }
      return entry;
    };
    for (const { report } of this.batches) slot(report.service, report.method).batches.push(report);
    for (const { report } of this.tasks) if (report.method) slot(report.service, report.method).tasks.push(report);
    const figures: MethodFigures[] = [...methods].map(([key, { batches, tasks }]) => {
      const [service, method] = key.split('\u0000') as [string, string];
      const waits = batches.flatMap((b) => b.taskWaitsMs).sort((a, b) => a - b);
      const maxMessages = limits[service]?.maxMessages ?? 1;
      const sizeBuckets: Record<string, number> = {};
      const flushReasons: Record<string, number> = {};
      for (const b of batches) {
        const bucket = SIZE_BUCKETS.find((upper) => b.size <= upper) ?? Infinity;
        const label = bucket === Infinity ? `>${SIZE_BUCKETS.at(-1)}` : `≤${bucket}`;
        sizeBuckets[label] = (sizeBuckets[label] ?? 0) + 1;
        flushReasons[b.flushReason] = (flushReasons[b.flushReason] ?? 0) + 1;
      }
      const settledNow = tasks.filter((t) => t.settlement !== 'redelivered').length;
      return {
        service,
        method,
        tasksPerSecond: round(settledNow / seconds),
        batches: batches.length,
        sizeBuckets,
        meanBatchSize: round(mean(batches.map((b) => b.size))),
        fillRatio: round(mean(batches.map((b) => b.size / maxMessages))),
        flushReasons,
        waitP50Ms: round(quantile(waits, 0.5)),
        waitP99Ms: round(quantile(waits, 0.99)),
        retried: tasks.filter((t) => t.settlement === 'retried').length,
        deadLettered: tasks.filter((t) => t.settlement === 'failed').length,
        succeeded: tasks.filter((t) => t.settlement === 'succeeded').length,
      };
    });
    const busy = new Map<string, { service: string; method: string; batchKey: string; tasks: number }>();
    for (const { at, report } of this.batches) {
      if (at < now - this.busyWindowMs || report.batchKey === null) continue;
      const key = `${report.service}\u0000${report.method}\u0000${report.batchKey}`;
      const entry = busy.get(key) ?? { service: report.service, method: report.method, batchKey: report.batchKey, tasks: 0 };
      entry.tasks += report.size;
      busy.set(key, entry);
    }
    return {
      at: now,
      windowSeconds: this.windowMs / 1000,
      status: this.source.state.status,
      services: this.source.stats(),
      methods: figures.sort((a, b) => `${a.service}.${a.method}`.localeCompare(`${b.service}.${b.method}`)),
      busiestKeys: [...busy.values()].sort((a, b) => b.tasks - a.tasks).slice(0, 20),
      totals: { ...this.totals },
    };
  }
}

function mean(values: number[]): number {
  return values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
