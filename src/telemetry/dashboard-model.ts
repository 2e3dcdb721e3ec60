/**
 * What the live dashboard shows, computed from a worker's own events over a
 * sliding window (default 60 s): per service and method, tasks per second,
 * batch sizes and how full they were, flush reasons, how long tasks waited in
 * their aggregates (p50/p99), retries and dead letters; the busiest batch
 * keys of the last seconds; and the worker's in-flight figures.
 *
 * Memory is bounded whatever the load or the number of keys: events are
 * folded into one bucket per second (counts, not records), each bucket keeps
 * at most `WAIT_SAMPLES` task waits (a reservoir sample) and `KEYS_PER_SECOND`
 * batch keys, and buckets older than the window are dropped.
 */
import type { JobStatus } from '../wire/job-events.js';
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
  /** Why the worker cannot reach its broker now, if it cannot (`/readyz` reports it). */
  readonly connectionProblem?: string | null;
  /** Jobs this worker's job tracker holds, newest first (none when another worker's tracker is the active one). */
  jobs?(): readonly JobStatus[];
  /** This worker's job tracker: its phase, and the epoch of its term while it holds one; null when it has none. */
  jobTracker?(): JobTrackerView | null;
}

/** A job tracker as the dashboard shows it. */
export interface JobTrackerView {
  /** `standby`, `recovering` or `active` (docs/operations.md, "Job trackers"). */
  readonly phase: string;
  /** The epoch of its term (recovering or active), else null. */
  readonly epoch: number | null;
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
  /** The busiest batch keys over the last `busyWindowMs`, by tasks. */
  readonly busiestKeys: Array<{ service: string; method: string; batchKey: string; tasks: number }>;
  readonly totals: { received: number; succeeded: number; retried: number; deadLettered: number };
  /** The jobs this worker's tracker holds, newest first, at most `DASHBOARD_JOBS`. */
  readonly jobs: readonly JobStatus[];
  /** This worker's job tracker (null: `jobs.tracker` off, or it could not start). */
  readonly jobTracker: JobTrackerView | null;
}

/** Jobs the dashboard shows at most. */
export const DASHBOARD_JOBS = 20;

const SIZE_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];
const WAIT_SAMPLES = 512;
const KEYS_PER_SECOND = 1000;

/** One service method's events in one second. */
interface MethodSecond {
  settled: number;
  succeeded: number;
  retried: number;
  deadLettered: number;
  batches: number;
  sizeSum: number;
  fillSum: number;
  sizeBuckets: Record<string, number>;
  flushReasons: Record<string, number>;
  waits: number[];
  waitsSeen: number;
  keys: Map<string, number>;
}

interface Second {
  readonly at: number;
  readonly methods: Map<string, MethodSecond>;
}

export class DashboardModel {
  private readonly seconds: Second[] = [];
  private readonly totals = { received: 0, succeeded: 0, retried: 0, deadLettered: 0 };
  /** A worker's services and their settings do not change after it is built: read once, not per batch. */
  private readonly limits: Record<string, { maxMessages: number }>;
  private readonly onBatch = (report: BatchReport): void => {
    const slot = this.slot(report.service, report.method);
    const maxMessages = this.limits[report.service]?.maxMessages ?? 1;
    slot.batches += 1;
    slot.sizeSum += report.size;
    slot.fillSum += report.size / maxMessages;
    const label = sizeLabel(report.size);
    slot.sizeBuckets[label] = (slot.sizeBuckets[label] ?? 0) + 1;
    slot.flushReasons[report.flushReason] = (slot.flushReasons[report.flushReason] ?? 0) + 1;
    for (const wait of report.taskWaitsMs) {
      // Reservoir sampling: every wait of the second has the same chance to be kept.
      slot.waitsSeen += 1;
      if (slot.waits.length < WAIT_SAMPLES) slot.waits.push(wait);
      else {
        const at = Math.floor(this.random() * slot.waitsSeen);
        if (at < WAIT_SAMPLES) slot.waits[at] = wait;
      }
    }
    if (report.batchKey !== null && (slot.keys.has(report.batchKey) || slot.keys.size < KEYS_PER_SECOND)) {
      slot.keys.set(report.batchKey, (slot.keys.get(report.batchKey) ?? 0) + report.size);
    }
  };
  private readonly onTask = (report: TaskReport): void => {
    // Handed back unrun: it comes again, and is counted then.
    if (report.settlement === 'redelivered' || report.settlement === 'deferred') return;
    this.totals.received += 1;
    const slot = report.method ? this.slot(report.service, report.method) : null;
    if (slot) slot.settled += 1;
    if (report.settlement === 'succeeded') {
      this.totals.succeeded += 1;
      if (slot) slot.succeeded += 1;
    } else if (report.settlement === 'retried' || report.settlement === 'isolated') {
      // Sent back to run again: an isolation retry is one too, though it uses no retry.
      this.totals.retried += 1;
      if (slot) slot.retried += 1;
    } else if (report.settlement === 'failed') {
      this.totals.deadLettered += 1;
      if (slot) slot.deadLettered += 1;
    }
  };

  constructor(
    private readonly source: DashboardSource,
    private readonly windowMs = 60_000,
    private readonly busyWindowMs = 10_000,
    private readonly now: () => number = Date.now,
    private readonly random: () => number = Math.random,
  ) {
    this.limits = source.batchLimits();
    source.events.on('batch', this.onBatch);
    source.events.on('task', this.onTask);
  }

  close(): void {
    this.source.events.off('batch', this.onBatch);
    this.source.events.off('task', this.onTask);
  }

  snapshot(): DashboardSnapshot {
    const now = this.now();
    this.dropOlderThan(now - this.windowMs);
    const spanSeconds = Math.max(1, Math.min(this.windowMs, now - (this.seconds[0]?.at ?? now)) / 1000);
    const merged = new Map<string, MethodSecond>();
    const busy = new Map<string, { service: string; method: string; batchKey: string; tasks: number }>();
    for (const second of this.seconds) {
      const recent = second.at >= now - this.busyWindowMs;
      for (const [key, s] of second.methods) {
        const m = merged.get(key) ?? emptyMethodSecond();
        merged.set(key, m);
        m.settled += s.settled;
        m.succeeded += s.succeeded;
        m.retried += s.retried;
        m.deadLettered += s.deadLettered;
        m.batches += s.batches;
        m.sizeSum += s.sizeSum;
        m.fillSum += s.fillSum;
        for (const [label, n] of Object.entries(s.sizeBuckets)) m.sizeBuckets[label] = (m.sizeBuckets[label] ?? 0) + n;
        for (const [reason, n] of Object.entries(s.flushReasons)) m.flushReasons[reason] = (m.flushReasons[reason] ?? 0) + n;
        m.waits.push(...s.waits);
        if (!recent) continue;
        const [service, method] = key.split('\u0000') as [string, string];
        for (const [batchKey, tasks] of s.keys) {
          const id = `${key}\u0000${batchKey}`;
          const entry = busy.get(id) ?? { service, method, batchKey, tasks: 0 };
          entry.tasks += tasks;
          busy.set(id, entry);
        }
      }
    }
    const methods: MethodFigures[] = [...merged].map(([key, m]) => {
      const [service, method] = key.split('\u0000') as [string, string];
      const waits = m.waits.sort((a, b) => a - b);
      return {
        service,
        method,
        tasksPerSecond: round(m.settled / spanSeconds),
        batches: m.batches,
        sizeBuckets: m.sizeBuckets,
        meanBatchSize: round(m.batches === 0 ? 0 : m.sizeSum / m.batches),
        fillRatio: round(m.batches === 0 ? 0 : m.fillSum / m.batches),
        flushReasons: m.flushReasons,
        waitP50Ms: round(quantile(waits, 0.5)),
        waitP99Ms: round(quantile(waits, 0.99)),
        retried: m.retried,
        deadLettered: m.deadLettered,
        succeeded: m.succeeded,
      };
    });
    return {
      at: now,
      windowSeconds: this.windowMs / 1000,
      status: this.source.state.status,
      services: this.source.stats(),
      methods: methods.sort((a, b) => `${a.service}.${a.method}`.localeCompare(`${b.service}.${b.method}`)),
      busiestKeys: [...busy.values()].sort((a, b) => b.tasks - a.tasks).slice(0, 20),
      totals: { ...this.totals },
      jobs: (this.source.jobs?.() ?? []).slice(0, DASHBOARD_JOBS),
      jobTracker: this.source.jobTracker?.() ?? null,
    };
  }

  /** The bucket of this second for one service method. */
  private slot(service: string, method: string): MethodSecond {
    const at = Math.floor(this.now() / 1000) * 1000;
    let second = this.seconds.at(-1);
    if (!second || second.at !== at) {
      second = { at, methods: new Map() };
      this.seconds.push(second);
      this.dropOlderThan(at - this.windowMs);
    }
    const key = `${service}\u0000${method}`;
    let slot = second.methods.get(key);
    if (!slot) {
      slot = emptyMethodSecond();
      second.methods.set(key, slot);
    }
    return slot;
  }

  private dropOlderThan(cutoff: number): void {
    while (this.seconds.length > 0 && this.seconds[0]!.at < cutoff) this.seconds.shift();
  }
}

function emptyMethodSecond(): MethodSecond {
  return {
    settled: 0,
    succeeded: 0,
    retried: 0,
    deadLettered: 0,
    batches: 0,
    sizeSum: 0,
    fillSum: 0,
    sizeBuckets: {},
    flushReasons: {},
    waits: [],
    waitsSeen: 0,
    keys: new Map(),
  };
}

function sizeLabel(size: number): string {
  const upper = SIZE_BUCKETS.find((bound) => size <= bound);
  return upper === undefined ? `>${SIZE_BUCKETS.at(-1)}` : `≤${upper}`;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
