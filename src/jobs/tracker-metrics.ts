/**
 * The job tracker's metrics (docs/operations.md): jobs seen created and
 * marked finished by this process's tracker while it was active (a tracker
 * that takes over may count a job's creation again), and the jobs it holds.
 */
import { metrics, type Counter, type ObservableGauge, type ObservableResult } from '@opentelemetry/api';

/** The tracker's counters and its gauge of jobs held; `close()` stops observing the gauge. */
export class TrackerMetrics {
  /** `sheaf_jobs_started_total`: a job's creation folded. */
  readonly started: Counter;
  /** `sheaf_jobs_finished_total{outcome}`: a job marked finished (succeeded: nothing failed). */
  readonly finished: Counter;
  private readonly tracked: ObservableGauge;
  private readonly observeTracked: (result: ObservableResult) => void;

  constructor(jobsHeld: () => number) {
    const meter = metrics.getMeter('sheaf');
    this.started = meter.createCounter('sheaf_jobs_started_total', { description: 'jobs whose creation this tracker folded' });
    this.finished = meter.createCounter('sheaf_jobs_finished_total', {
      description: 'jobs this tracker marked finished, by outcome (succeeded: nothing failed)',
    });
    this.tracked = meter.createObservableGauge('sheaf_jobs_tracked', {
      description: 'jobs in the tracker: running, or finished within the retention',
    });
    this.observeTracked = (result) => result.observe(jobsHeld());
    this.tracked.addCallback(this.observeTracked);
  }

  /** Stops reporting the gauge (the tracker closed). */
  close(): void {
    this.tracked.removeCallback(this.observeTracked);
  }
}
