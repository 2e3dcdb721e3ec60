/**
 * Memory and back-pressure: sustained load over many distinct batch keys.
 * The worker's peak RSS stays bounded, idle keys leave nothing behind, and
 * tasks in flight never exceed the configured bound (maxUnacked).
 */
import { expect, test } from 'vitest';
import { connectClient, dispatchAll, faultRun, pick, recordFigures, startStatWorker } from './support.js';

test('distinct batch keys under sustained load: bounded in-flight tasks and bounded memory', async () => {
  const keys = pick(100_000, 10_000);
  const maxUnacked = 1000;
  const faults = await faultRun(`concurrency: 4\n      maxUnacked: ${maxUnacked}\n      batch: { maxMessages: 100, maxSeconds: 0.2 }`);
  const worker = startStatWorker(faults);
  await worker.ready;
  const { client, close } = await connectClient(faults);
  const started = Date.now();
  try {
    // Every task has a key of its own: the worst case for the aggregator.
    const { wrong } = await dispatchAll(
      client,
      keys,
      (i) => `tenant-${i}`,
      () => undefined,
      5000,
    );
    const seconds = (Date.now() - started) / 1000;
    const stats = await worker.stop();
    await recordFigures('memory', {
      distinctKeys: keys,
      maxUnacked,
      maxInFlight: stats.maxInFlight,
      maxOpenAggregates: stats.maxOpenAggregates,
      peakRssMiB: stats.peakRssMiB.toFixed(1),
      tasksPerSecond: (keys / seconds).toFixed(0),
    });
    expect(wrong).toBe(0);
    expect(stats.maxInFlight).toBeLessThanOrEqual(maxUnacked);
    expect(stats.maxInFlight).toBeGreaterThan(0);
  } finally {
    await close();
  }
});
