/**
 * The job tracker against the in-memory transport, its rounds driven by the
 * test: messages it cannot read are skipped (and acked), a job nothing is
 * heard of is let go after the retention, a finished one after its
 * callbacks and the retention.
 */
import { afterEach, describe, expect, test, vi } from 'vitest';
import { JobTracker } from '../../src/jobs/tracker.js';
import { JOB_ANSWERS_TOPIC, JOB_EVENTS_TOPIC, JOB_REQUESTS_TOPIC, JOB_SNAPSHOTS_TOPIC, JOB_STATE_TOPIC } from '../../src/topics.js';
import { InMemoryTransport } from '../../src/transport/memory/in-memory-transport.js';
import type { Consumer } from '../../src/transport/transport.js';
import { decodeJobEvent, decodeJobState, encodeJobEvent, type JobEvent, type JobListMessage } from '../../src/wire/job-events.js';
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
    await vi.waitFor(() => expect(tracker.phase).toBe('active'));
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

  test('a request for every job is answered in parts of 1,000, each with the epoch of its term', async () => {
    const send = await start();
    for (let i = 0; i < 2500; i++) {
      await send({ v: 1, kind: 'jobCreated', jobId: `j-${i}`, meta: {}, continueOnError: true, at: clock.now() });
    }
    await vi.waitFor(() => expect(tracker.jobCount).toBe(2500));
    const answers = await transport.subscribe({ topic: JOB_ANSWERS_TOPIC, subscription: 'test', maxUnacked: 10 });
    const requests = await transport.createProducer(JOB_REQUESTS_TOPIC);
    await requests.send({ payload: encodeJobEvent({ v: 1, kind: 'jobListRequest', requestId: 'r1', limit: 1, all: true }) });
    const parts: JobListMessage[] = [];
    while (parts.length < 3) {
      const decoded = decodeJobState((await answers.receive()).payload);
      if ('list' in decoded) parts.push(decoded.list);
    }
    expect(parts.map((p) => [p.requestId, p.epoch, p.part, p.statuses.length])).toEqual([
      ['r1', tracker.epoch, { index: 0, count: 3 }, 1000],
      ['r1', tracker.epoch, { index: 1, count: 3 }, 1000],
      ['r1', tracker.epoch, { index: 2, count: 3 }, 500],
    ]);
    expect(new Set(parts.flatMap((p) => p.statuses.map((s) => s.jobId))).size).toBe(2500);
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

  describe('one active tracker at a time', () => {
    const others: JobTracker[] = [];
    afterEach(async () => {
      for (const other of others.splice(0)) await other.close();
    });

    /** Another tracker on the same transport, trying for the term every 5 ms, its rounds driven by the test. */
    async function another(): Promise<JobTracker> {
      const other = new JobTracker({ transport, logger: testLogger, clock, checkpointIntervalMs: 3_600_000, standbyRetryMs: 5 });
      others.push(other);
      await other.start();
      return other;
    }

    /**
     * The distinct finished marks (`finishedAt`) in the snapshots written so
     * far, read through a subscription of the test's own: a job finished
     * once has one, however many snapshots carry it.
     */
    const marks = new Set<number>();
    async function finishedMarks(observer: Consumer): Promise<number> {
      for (let batch = observer.takeDelivered(1000); batch.length > 0; batch = observer.takeDelivered(1000)) {
        for (const message of batch) {
          const decoded = decodeJobEvent(message.payload);
          if ('event' in decoded && decoded.event.kind === 'jobState' && decoded.event.finishedAt !== null) {
            marks.add(decoded.event.finishedAt);
          }
        }
        await observer.ackAll(batch);
      }
      return marks.size;
    }
    afterEach(() => marks.clear());

    const twoTasks = (jobId: string): JobEvent[] => [
      { v: 1, kind: 'jobCreated', jobId, meta: {}, continueOnError: true, at: clock.now() },
      { v: 1, kind: 'tasksSettled', jobId, tasks: [[0, 'succeeded']], at: clock.now() },
      { v: 1, kind: 'tasksSettled', jobId, tasks: [[1, 'succeeded']], at: clock.now() },
      { v: 1, kind: 'jobSealed', jobId, total: 2, at: clock.now() },
    ];

    test("a standby takes over when the active tracker closes: every job's progress carried over, the job finished once", async () => {
      const send = await start();
      const observer = await transport.subscribe({ topic: JOB_SNAPSHOTS_TOPIC, subscription: 'observer', maxUnacked: 1000 });
      const standby = await another();
      expect(standby.phase).toBe('standby');
      const [created, first, second, sealed] = twoTasks('j');
      for (const event of [created!, first!]) await send(event);
      await vi.waitFor(() => expect(tracker.jobCount).toBe(1));
      await tracker.checkpoint(); // j: one of two settled, durable in a snapshot
      expect(standby.phase).toBe('standby');
      await tracker.close();

      await vi.waitFor(() => expect(standby.phase).toBe('active'));
      expect(standby.epoch).toBeGreaterThan(0);
      expect(standby.jobCount).toBe(1);
      for (const event of [second!, sealed!]) await send(event);
      await vi.waitFor(async () => {
        await standby.checkpoint();
        expect(standby.recentStatuses(1)[0]).toMatchObject({ jobId: 'j', succeeded: 2, total: 2, finishedAt: clock.now() });
      });
      await standby.checkpoint();
      expect(await finishedMarks(observer)).toBe(1);
    });

    test('a tracker fenced mid-term stores nothing more, stands down, and the next one finishes the job once', async () => {
      const send = await start();
      const observer = await transport.subscribe({ topic: JOB_SNAPSHOTS_TOPIC, subscription: 'observer', maxUnacked: 1000 });
      const successor = await another();
      const epochBefore = tracker.epoch!;
      for (const event of twoTasks('j')) await send(event);
      await vi.waitFor(() => expect(tracker.recentStatuses(1)[0]).toMatchObject({ sealed: true, succeeded: 2 }));

      // Its term is lost while it does not know yet (a frozen process, woken): it finishes the job and writes the mark.
      transport.fenceExclusiveProducer(JOB_SNAPSHOTS_TOPIC);
      await tracker.checkpoint();
      expect(await finishedMarks(observer)).toBe(0); // refused: fenced
      clock.advance(1000); // a second mark, were one written, would differ from the first

      await vi.waitFor(() => expect(tracker.phase).not.toBe('active'));
      // One of the two holds the next term (the stood-down tracker competes again); it has the job from what was unacked.
      const next = await vi.waitFor(() => {
        const active = [tracker, successor].find((t) => t.phase === 'active');
        expect(active).toBeDefined();
        return active!;
      });
      expect(next.epoch).toBeGreaterThan(epochBefore);
      await vi.waitFor(async () => {
        await next.checkpoint();
        expect(next.recentStatuses(1)[0]).toMatchObject({ jobId: 'j', succeeded: 2, finishedAt: expect.any(Number) });
      });
      await next.checkpoint();
      await next.checkpoint();
      expect(await finishedMarks(observer)).toBe(1);
      // Its statuses carry its epoch.
      const stamped = await vi.waitFor(async () => {
        const message = await statuses.receive();
        const decoded = decodeJobState(message.payload);
        expect('epoch' in decoded && decoded.epoch).toBe(next.epoch);
        return decoded;
      });
      expect(stamped).toMatchObject({ status: { jobId: 'j' } });
    });
  });
});
