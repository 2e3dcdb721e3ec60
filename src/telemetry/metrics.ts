/**
 * Worker metrics through the OpenTelemetry metrics API. With no SDK
 * registered the instruments are no-ops; `sheaf worker --metrics-port`
 * registers one with a Prometheus exporter (metrics-server.ts).
 *
 * Names follow Prometheus conventions (a `sheaf_` prefix, units in the name,
 * `_total` on counters). Labels are the service, the task method, a flush
 * reason or a settlement: never a batch key, which is user data of unbounded
 * cardinality.
 */
import { metrics, type Attributes, type Counter, type Histogram, type ObservableResult } from '@opentelemetry/api';

const meter = () => metrics.getMeter('sheaf');

/** Histogram bounds for task counts per batch. */
const SIZE_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];
/** Histogram bounds for seconds (waits and executions). */
const SECONDS_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
const BYTES_BUCKETS = [256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216];

/** Per-service figures read when metrics are collected (observable instruments). */
export interface GaugeSource {
  stats(): Record<string, ObservedStats>;
}

/** What is read of a service's stats; `settledElsewhere` counts up, the others are levels. */
interface ObservedStats {
  inFlight: number;
  openAggregates: number;
  runningExecutions: number;
  settledElsewhere?: number;
}

/** Per-task counts kept in plain numbers and reported when metrics are collected. */
class TaskCounts {
  /** Cumulative count per (service, method), with the label set reported with it. */
  readonly values = new Map<string, { readonly labels: Attributes; value: number }>();

  add(key: string, labels: Attributes): void {
    const entry = this.values.get(key);
    if (entry) entry.value += 1;
    else this.values.set(key, { labels, value: 1 });
  }
}

/**
 * The instruments of one worker. Counts that change once per task (received,
 * succeeded, retried, dead-lettered) are kept as plain numbers and reported
 * through observable counters when metrics are collected: an SDK counter's
 * `add` hashes its attributes on every call, which cost a tenth of a busy
 * worker's CPU. Per-batch figures are recorded as they happen.
 */
export class WorkerMetrics {
  private readonly received = new TaskCounts();
  private readonly succeeded = new TaskCounts();
  private readonly retried = new TaskCounts();
  private readonly deadLettered = new TaskCounts();
  private readonly twins = new TaskCounts();
  private readonly isolated = new TaskCounts();
  private readonly poison = new TaskCounts();
  private readonly deferred = new TaskCounts();
  private readonly failed: Counter;
  private readonly flushes: Counter;
  private readonly batchSize: Histogram;
  private readonly batchBytes: Histogram;
  private readonly taskWait: Histogram;
  private readonly duration: Histogram;
  private readonly detach: Array<() => void> = [];
  /** Attribute objects are reused: one per (service, method), not one per task. */
  private readonly labels = new Map<string, Attributes>();

  constructor(source: GaugeSource) {
    const m = meter();
    const observed = (name: string, description: string, counts: TaskCounts): void => {
      const instrument = m.createObservableCounter(name, { description });
      const callback = (result: ObservableResult): void => {
        for (const { labels, value } of counts.values.values()) result.observe(value, labels);
      };
      instrument.addCallback(callback);
      this.detach.push(() => instrument.removeCallback(callback));
    };
    observed('sheaf_tasks_received_total', 'task messages received by the worker', this.received);
    observed('sheaf_tasks_succeeded_total', 'tasks that succeeded (result made durable)', this.succeeded);
    observed('sheaf_tasks_retried_total', 'retries scheduled', this.retried);
    observed('sheaf_tasks_dead_lettered_total', 'tasks that ended on the dead-letter topic', this.deadLettered);
    observed('sheaf_tasks_twins_dropped_total', 'second copies of attempts already settled, acked without running', this.twins);
    observed('sheaf_tasks_isolated_total', 'tasks of batches that failed as a whole, sent back in isolation groups', this.isolated);
    observed('sheaf_tasks_poison_total', 'tasks that failed alone after their batch was split (poison found)', this.poison);
    observed(
      'sheaf_tasks_deferred_total',
      'tasks given back unrun because their key had every slot busy while other keys waited',
      this.deferred,
    );
    this.failed = m.createCounter('sheaf_tasks_failed_total', { description: 'task executions that failed (each attempt)' });
    this.flushes = m.createCounter('sheaf_batch_flushes_total', { description: 'batches flushed, by flush reason' });
    this.batchSize = m.createHistogram('sheaf_batch_size_tasks', {
      description: 'tasks per executed batch',
      advice: { explicitBucketBoundaries: SIZE_BUCKETS },
    });
    this.batchBytes = m.createHistogram('sheaf_batch_size_bytes', {
      description: 'bytes per executed batch',
      advice: { explicitBucketBoundaries: BYTES_BUCKETS },
    });
    this.taskWait = m.createHistogram('sheaf_task_wait_seconds', {
      description: 'time a task waited in its aggregate before the batch was flushed',
      advice: { explicitBucketBoundaries: SECONDS_BUCKETS },
    });
    this.duration = m.createHistogram('sheaf_execution_duration_seconds', {
      description: 'duration of one execution (a batch, or a single task)',
      advice: { explicitBucketBoundaries: SECONDS_BUCKETS },
    });
    const observe = (name: string, description: string, pick: (s: ObservedStats) => number, kind: 'gauge' | 'counter' = 'gauge') => {
      const instrument =
        kind === 'gauge' ? m.createObservableGauge(name, { description }) : m.createObservableCounter(name, { description });
      const callback = (result: ObservableResult): void => {
        for (const [service, stats] of Object.entries(source.stats())) result.observe(pick(stats), { service });
      };
      instrument.addCallback(callback);
      this.detach.push(() => instrument.removeCallback(callback));
    };
    observe('sheaf_tasks_in_flight', 'tasks received and not yet settled', (s) => s.inFlight);
    observe('sheaf_open_aggregates', 'aggregates (method and batch key) filling now', (s) => s.openAggregates);
    observe('sheaf_running_executions', 'batches or single tasks executing now', (s) => s.runningExecutions);
    observe(
      'sheaf_settled_elsewhere_total',
      'attempts other workers of the service announced as settled (their copies are not run here; settledCache.shared)',
      (s) => s.settledElsewhere ?? 0,
      'counter',
    );
  }

  /** Stops reporting this worker's gauges (it closed). */
  close(): void {
    for (const detach of this.detach.splice(0)) detach();
  }

  taskReceived(service: string, method: string): void {
    const key = labelKey(service, method);
    this.received.add(key, this.label(key, service, method));
  }

  taskSettled(service: string, method: string | null, settlement: string, failedForGood: boolean, poison = false): void {
    const key = labelKey(service, method ?? '');
    const labels = this.label(key, service, method ?? '');
    if (settlement === 'succeeded') this.succeeded.add(key, labels);
    else if (settlement === 'retried') this.retried.add(key, labels);
    else if (settlement === 'twin') this.twins.add(key, labels);
    else if (settlement === 'isolated') this.isolated.add(key, labels);
    else if (settlement === 'deferred') this.deferred.add(key, labels);
    if (failedForGood) this.deadLettered.add(key, labels);
    if (poison) this.poison.add(key, labels);
  }

  executionFailed(service: string, method: string, tasks: number): void {
    if (tasks > 0) this.failed.add(tasks, this.labelOf(service, method));
  }

  batchExecuted(service: string, method: string, size: number, bytes: number, reason: string, durationMs: number, waitsMs: number[]): void {
    const labels = this.labelOf(service, method);
    this.batchSize.record(size, labels);
    this.batchBytes.record(bytes, labels);
    this.duration.record(durationMs / 1000, labels);
    this.flushes.add(1, { service, method, reason });
    for (const wait of waitsMs) this.taskWait.record(wait / 1000, labels);
  }

  singleExecuted(service: string, method: string, durationMs: number): void {
    this.duration.record(durationMs / 1000, this.labelOf(service, method));
  }

  private labelOf(service: string, method: string): Attributes {
    return this.label(labelKey(service, method), service, method);
  }

  private label(key: string, service: string, method: string): Attributes {
    let labels = this.labels.get(key);
    if (!labels) {
      labels = { service, method };
      this.labels.set(key, labels);
    }
    return labels;
  }
}

function labelKey(service: string, method: string): string {
  return `${service}\u0000${method}`;
}

/**
 * Counts a producer's or consumer's reconnect (Pulsar client). The meter is
 * looked up each time (reconnects are rare): the metrics API has no proxy, so
 * an instrument made before an SDK was registered would stay a no-op.
 */
export function countReconnect(kind: 'producer' | 'consumer'): void {
  meter()
    .createCounter('sheaf_connection_reconnects_total', { description: 'producer and consumer reconnects to the broker' })
    .add(1, { kind });
}
