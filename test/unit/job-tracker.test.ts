/**
 * The job tracker against the in-memory transport, its rounds driven by the
 * test: messages it cannot read are skipped (and acked), a job nothing is
 * heard of is let go after the retention, a finished one after its
 * callbacks and the retention.
 */
import { afterEach, describe, expect, test, vi } from 'vitest';
import { JobTracker } from '../../src/jobs/tracker.js';
import { JOB_EVENTS_TOPIC, JOB_STATE_TOPIC } from '../../src/topics.js';
import { InMemoryTransport } from '../../src/transport/memory/in-memory-transport.js';
import type { Consumer } from '../../src/transport/transport.js';
import { decodeJobState, encodeJobEvent, type JobEvent } from '../../src/wire/job-events.js';
import { testLogger } from '../support/logger.js';
import { ManualClock } from '../support/manual-clock.js';

const HOUR = 3600_000;

describe('JobTracker', () => {
  let transport: InMemoryTransport;
  let tracker: JobTracker;
  let statuses: Consumer;
  const clock = new ManualClock();
  afterEach(async () => {
    await tracker.close();
    await transport.close();
  });

  async function start(): Promise<(event: JobEvent | Uint8Array) => Promise<void>> {
    transport = new InMemoryTransport();
    // Rounds only when the test asks (checkpoint()), not on a timer.
    tracker = new JobTracker({ transport, logger: testLogger, clock, checkpointIntervalMs: 3_600_000, retentionMs: HOUR });
    await tracker.start();
    statuses = await transport.subscribe({ topic: JOB_STATE_TOPIC, subscription: 'test', maxUnacked: 1000 });
    const producer = await transport.createProducer(JOB_EVENTS_TOPIC);
    return async (event) => {
      await producer.send({ payload: event instanceof Uint8Array ? event : encodeJobEvent(event), key: 'k' });
    };
  }

  test('messages it cannot read are skipped, and the events after them still count', async () => {
    const send = await start();
    await send(new TextEncoder().encode('{not json'));
    await send(encodeJobEvent({ v: 1, kind: 'tasksSettled', jobId: 'j', tasks: [[-1, 'succeeded']], at: 1 } as unknown as JobEvent));
    await send({ v: 1, kind: 'jobCreated', jobId: 'j', meta: {}, continueOnError: true, at: clock.now() });
    await send({
      v: 1,
      kind: 'tasksSettled',
      jobId: 'j',
      tasks: [
        [0, 'succeeded'],
        [1, 'failed'],
      ],
      at: clock.now(),
    });
    await send({ v: 1, kind: 'jobSealed', jobId: 'j', total: 2, at: clock.now() });
    await vi.waitFor(() => expect(tracker.jobCount).toBe(1));
    await vi.waitFor(async () => {
      await tracker.checkpoint();
      const message = await statuses.receive();
      const decoded = decodeJobState(message.payload);
      expect(decoded).toMatchObject({ status: { jobId: 'j', succeeded: 1, failed: 1, total: 2 } });
      expect('status' in decoded && decoded.status.finishedAt).toBe(clock.now());
    });
  });

  test('a job nothing is heard of is let go after the retention; a finished one after its retention too', async () => {
    const send = await start();
    await send({ v: 1, kind: 'jobCreated', jobId: 'abandoned', meta: {}, continueOnError: true, at: clock.now() });
    await send({ v: 1, kind: 'jobCreated', jobId: 'done', meta: {}, continueOnError: true, at: clock.now() });
    await send({ v: 1, kind: 'jobSealed', jobId: 'done', total: 0, at: clock.now() });
    await vi.waitFor(() => expect(tracker.jobCount).toBe(2));
    await tracker.checkpoint(); // snapshots both, finishes 'done'
    await tracker.checkpoint(); // records its callbacks (none) as sent
    clock.advance(HOUR / 2);
    await tracker.checkpoint();
    expect(tracker.jobCount).toBe(2);
    clock.advance(HOUR);
    await tracker.checkpoint();
    expect(tracker.jobCount).toBe(0);
  });
});
