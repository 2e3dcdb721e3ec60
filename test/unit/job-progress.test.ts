/**
 * A job's progress folded from its events: distinct task indexes counted
 * once whatever repeats, status figures before and after the seal, the
 * finished mark set once, and snapshots that resume the same state.
 */
import { describe, expect, test } from 'vitest';
import { JobProgress } from '../../src/jobs/progress.js';
import { decodeJobEvent, encodeJobEvent, MAX_JOB_TASKS, type JobFact } from '../../src/wire/job-events.js';

const settled = (index: number, outcome: 'succeeded' | 'failed' | 'deadLettered' = 'succeeded'): JobFact => ({
  v: 1,
  kind: 'tasksSettled',
  jobId: 'job-1',
  tasks: [[index, outcome]],
  at: 2000 + index,
});

describe('JobProgress', () => {
  test('counts each task index once: repeats, twins and later outcomes change nothing', () => {
    const progress = new JobProgress('job-1', 1000);
    expect(progress.apply(settled(0))).toBe(true);
    expect(progress.apply(settled(0))).toBe(false);
    expect(progress.apply(settled(0, 'failed'))).toBe(false);
    expect(progress.apply(settled(5, 'failed'))).toBe(true);
    expect(progress.apply(settled(9, 'deadLettered'))).toBe(true);
    expect(progress.status()).toMatchObject({
      succeeded: 1,
      failed: 1,
      deadLettered: 1,
      total: null,
      sealed: false,
      pending: null,
      percent: null,
    });
  });

  test('sealed: pending and percent follow; complete once every task settled; finished marked once', () => {
    const progress = new JobProgress('job-1', 1000);
    progress.apply({ v: 1, kind: 'jobCreated', jobId: 'job-1', name: 'import', meta: { source: 'a.csv' }, continueOnError: true, at: 900 });
    for (let i = 0; i < 3; i++) progress.apply(settled(i));
    expect(progress.apply({ v: 1, kind: 'jobSealed', jobId: 'job-1', total: 4, at: 3000 })).toBe(true);
    expect(progress.apply({ v: 1, kind: 'jobSealed', jobId: 'job-1', total: 9, at: 3001 })).toBe(false);
    expect(progress.status()).toMatchObject({ name: 'import', total: 4, sealed: true, pending: 1, percent: 75, startedAt: 900 });
    expect(progress.complete).toBe(false);
    expect(progress.markFinished(4000)).toBe(false);
    progress.apply(settled(3, 'failed'));
    expect(progress.complete).toBe(true);
    expect(progress.markFinished(4000)).toBe(true);
    expect(progress.markFinished(5000)).toBe(false);
    expect(progress.status()).toMatchObject({ pending: 0, percent: 100, finishedAt: 4000, succeeded: 3, failed: 1 });
  });

  test('continueOnError false: complete at the first failure, sealed or not; what never settled is cancelled', () => {
    const progress = new JobProgress('job-1', 1000);
    progress.apply({ v: 1, kind: 'jobCreated', jobId: 'job-1', meta: {}, continueOnError: false, at: 900 });
    progress.apply(settled(0));
    expect(progress.complete).toBe(false);
    expect(progress.status()).toMatchObject({ stopped: false, cancelled: 0 });
    progress.apply(settled(1, 'deadLettered'));
    expect(progress.complete).toBe(true);
    expect(progress.status()).toMatchObject({ stopped: true, pending: 0, cancelled: null });
    progress.apply({ v: 1, kind: 'jobSealed', jobId: 'job-1', total: 10, at: 3000 });
    expect(progress.status()).toMatchObject({ stopped: true, total: 10, pending: 0, cancelled: 8 });
    // A successor that merges the snapshot knows the job stopped.
    expect(JobProgress.fromSnapshot(progress.snapshot()).status()).toMatchObject({ stopped: true, cancelled: 8 });
  });

  test('continueOnError true (the default): a failure is counted, and the job goes on', () => {
    const progress = new JobProgress('job-1', 1000);
    progress.apply(settled(0, 'failed'));
    progress.apply({ v: 1, kind: 'jobSealed', jobId: 'job-1', total: 2, at: 3000 });
    expect(progress.complete).toBe(false);
    expect(progress.status()).toMatchObject({ stopped: false, cancelled: 0, pending: 1 });
  });

  test('an empty sealed job is complete at once', () => {
    const progress = new JobProgress('job-1', 1000);
    progress.apply({ v: 1, kind: 'jobSealed', jobId: 'job-1', total: 0, at: 1000 });
    expect(progress.complete).toBe(true);
    expect(progress.status().percent).toBe(100);
  });

  test('a snapshot resumes the same state, and events folded again after it count nothing twice', () => {
    const progress = new JobProgress('job-1', 1000);
    const indexes = [0, 1, 7, 8, 1023, 99_999];
    for (const i of indexes) progress.apply(settled(i, i % 2 === 0 ? 'succeeded' : 'failed'));
    const resumed = JobProgress.fromSnapshot(JSON.parse(JSON.stringify(progress.snapshot())));
    expect(resumed.status()).toEqual(progress.status());
    for (const i of indexes) expect(resumed.apply(settled(i))).toBe(false);
    expect(resumed.apply(settled(2))).toBe(true);
    // 100,000 tasks take 25 kB, not a map of ids.
    expect(Buffer.from(progress.snapshot().outcomes, 'base64').length).toBe(Math.ceil(100_000 / 4));
  });

  test('a snapshot merged into a progress that folded other events: the union, each index counted once', () => {
    const before = new JobProgress('job-1', 1000);
    for (const i of [0, 1, 2]) before.apply(settled(i));
    before.apply({ v: 1, kind: 'jobSealed', jobId: 'job-1', total: 5, at: 3000 });
    const snapshot = before.snapshot();
    // A new owner folded events that came after the snapshot was taken, and one before it, first.
    const after = new JobProgress('job-1', 2500);
    after.apply(settled(2, 'failed')); // settled here first: keeps its outcome
    after.apply(settled(3, 'deadLettered'));
    expect(after.merge(snapshot)).toBe(true);
    expect(after.merge(snapshot)).toBe(false);
    after.apply(settled(4));
    expect(after.status()).toMatchObject({ total: 5, succeeded: 3, failed: 1, deadLettered: 1, pending: 0, startedAt: 1000 });
    expect(after.complete).toBe(true);
  });

  test('a snapshot that holds more than MAX_JOB_TASKS tasks is refused, naming the job', () => {
    const progress = new JobProgress('job-1', 1000);
    const huge = { ...progress.snapshot(), outcomes: Buffer.alloc(MAX_JOB_TASKS / 4 + 1, 1).toString('base64') };
    expect(() => JobProgress.fromSnapshot(huge)).toThrow(/job job-1: snapshot holds more than 10000000 tasks/);
  });
});

describe('job events on the wire', () => {
  test('round trip, and every bad field named', () => {
    const event = settled(4);
    expect(decodeJobEvent(encodeJobEvent(event))).toEqual({ event });
    const bad = (x: unknown) => decodeJobEvent(Buffer.from(JSON.stringify(x)));
    expect(bad({ ...event, tasks: [[MAX_JOB_TASKS, 'succeeded']] })).toEqual({ problem: expect.stringMatching(/^tasks\.0\.0: /) });
    expect(bad({ ...event, tasks: [] })).toEqual({ problem: expect.stringMatching(/^tasks: /) });
    expect(bad({ ...event, jobId: 'x'.repeat(129) })).toEqual({ problem: expect.stringMatching(/^jobId: /) });
    expect(bad({ ...event, tasks: [[1, 'maybe']] })).toEqual({ problem: expect.stringMatching(/^tasks\.0\.1: /) });
    expect(bad({ ...event, v: 2 })).toEqual({ problem: expect.stringMatching(/^v: /) });
    expect(decodeJobEvent(Buffer.from('{oops'))).toEqual({ problem: expect.stringMatching(/^not JSON/) });
  });
});
