import type { BatchReport, TaskReport } from '../worker/events.js';
import type { FlushReason } from '../worker/batch-buffer.js';
import { table } from '../util/text-table.js';

interface KeyFigures {
  tasks: number;
  batches: number;
  minSize: number;
  maxSize: number;
  reasons: Record<FlushReason, number>;
}

/** Collects what the worker reported during the demo and prints it as tables. */
export class DemoSummary {
  private readonly perKey = new Map<string, KeyFigures>();
  succeeded = 0;
  failed = 0;
  retried = 0;

  onBatch(report: BatchReport): void {
    const key = report.batchKey ?? '(none)';
    let figures = this.perKey.get(key);
    if (!figures) {
      figures = {
        tasks: 0,
        batches: 0,
        minSize: Infinity,
        maxSize: 0,
        reasons: { maxMessages: 0, maxSeconds: 0, maxBytes: 0, backpressure: 0, isolated: 0, shutdown: 0 },
      };
      this.perKey.set(key, figures);
    }
    figures.tasks += report.size;
    figures.batches += 1;
    figures.minSize = Math.min(figures.minSize, report.size);
    figures.maxSize = Math.max(figures.maxSize, report.size);
    figures.reasons[report.flushReason] += 1;
  }

  onTask(report: TaskReport): void {
    if (report.settlement === 'succeeded') this.succeeded += 1;
    else if (report.settlement === 'failed') this.failed += 1;
    else if (report.settlement === 'retried') this.retried += 1;
  }

  render(): string {
    const header = [
      'batch key',
      'executions',
      'batches',
      'min',
      'avg',
      'max',
      'maxMessages',
      'maxSeconds',
      'maxBytes',
      'backpressure',
      'isolated',
      'shutdown',
    ];
    const rows = [...this.perKey]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([key, f]) => [
        key,
        String(f.tasks),
        String(f.batches),
        String(f.minSize),
        (f.tasks / f.batches).toFixed(1),
        String(f.maxSize),
        String(f.reasons.maxMessages),
        String(f.reasons.maxSeconds),
        String(f.reasons.maxBytes),
        String(f.reasons.backpressure),
        String(f.reasons.isolated),
        String(f.reasons.shutdown),
      ]);
    return table([header, ...rows]);
  }
}
