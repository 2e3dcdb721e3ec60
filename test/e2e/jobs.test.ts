/**
 * Jobs end to end, on both transports: tasks joined to a job are counted by
 * the job tracker inside the worker, the job is marked finished once, its
 * callbacks run with stable task ids, and its status is followed from the
 * client that made it and from another one.
 */
import 'reflect-metadata';
import { afterEach, describe, expect, test } from 'vitest';
import { SheafClient } from '../../src/client/client.js';
import { randomUUID } from 'node:crypto';
import { JOB_REQUESTS_TOPIC, JOB_SNAPSHOTS_TOPIC, taskTopic } from '../../src/topics.js';
import { encodeEnvelope } from '../../src/wire/envelopes.js';
import { rawTask } from '../support/tasks.js';
import { decodeJobEvent, encodeJobEvent } from '../../src/wire/job-events.js';
import { SheafWorker } from '../../src/worker/worker.js';
import { NonRetryableError } from '../../src/errors.js';
import { Batch } from '../../src/service/decorators.js';
import type { JobItemError, JobStatus } from '../../src/wire/job-events.js';
import { PulsarTransport } from '../../src/transport/pulsar/pulsar-transport.js';
import { testLogger } from '../support/logger.js';
import { pulsarTransport } from '../support/pulsar.js';
import { startSystem, type System } from '../support/system.js';
import { transportTargets } from '../support/transports.js';

interface Rows {
  insert(row: number): Promise<string>;
}

class RowsImpl {
  insert(_row: number): void {}
  @Batch('insert')
  async insertMany(rows: Map<string, number>): Promise<Map<string, string | Error>> {
    // Rows divisible by 7 are refused for good.
    return new Map([...rows].map(([id, row]) => [id, row % 7 === 0 ? new NonRetryableError(`row ${row} refused`) : `row ${row}`]));
  }
}

/** Records each callback task it runs: method, task id, status (or the failed item, for itemFailed). */
function callbackService(calls: Array<{ method: string; taskId: string; status: JobStatus }>, itemErrors: JobItemError[] = []) {
  class Callbacks {
    imported(_s: JobStatus): void {}
    finished(_s: JobStatus): void {}
    itemFailed(_item: JobItemError): void {}
    @Batch('itemFailed')
    async itemFailedMany(tasks: Map<string, JobItemError>): Promise<void> {
      for (const [taskId, item] of tasks) {
        expect(taskId).toBe(`${item.jobId}:onItemError:${item.index}`);
        itemErrors.push(item);
      }
    }
    @Batch('imported')
    async importedMany(tasks: Map<string, JobStatus>): Promise<void> {
      for (const [taskId, status] of tasks) calls.push({ method: 'imported', taskId, status });
    }
    @Batch('finished')
    async finishedMany(tasks: Map<string, JobStatus>): Promise<void> {
      for (const [taskId, status] of tasks) calls.push({ method: 'finished', taskId, status });
    }
  }
  return Callbacks;
}

for (const target of transportTargets()) {
  describe.skipIf(target.skip)(`jobs (${target.name})`, () => {
    let system: System | undefined;
    afterEach(async () => {
      await system?.stop();
      system = undefined;
    });

    async function start(
      calls: Array<{ method: string; taskId: string; status: JobStatus }>,
      itemErrors: JobItemError[] = [],
    ): Promise<System> {
      const Callbacks = callbackService(calls, itemErrors);
      system = await startSystem(
        [
          { name: 'Rows', executor: { factory: () => new RowsImpl(), batch: { maxMessages: 20, maxSeconds: 0.05 } } },
          { name: 'Callbacks', executor: { factory: () => new Callbacks(), batch: { maxMessages: 1, maxSeconds: 0.05 } } },
        ],
        await target.create(),
      );
      return system;
    }

    test('a job of 100 tasks, some failing: counted once each, finished once, onComplete called and onSuccess not, onItemError per failed task', async () => {
      const calls: Array<{ method: string; taskId: string; status: JobStatus }> = [];
      const itemErrors: JobItemError[] = [];
      const s = await start(calls, itemErrors);
      const rows = s.client.service<Rows>('Rows');
      const job = await s.client.job({
        name: 'import',
        callbacks: { service: 'Callbacks', onSuccess: 'imported', onComplete: 'finished', onItemError: 'itemFailed' },
      });
      const handles = await Promise.all([...Array(100).keys()].map((i) => job.dispatch(rows).insert(i)));
      await job.seal();
      const final = await job.done({ timeoutMs: 30_000 });
      const failing = [...Array(100).keys()].filter((i) => i % 7 === 0).length;
      expect(final).toMatchObject({
        name: 'import',
        total: 100,
        sealed: true,
        succeeded: 100 - failing,
        failed: failing,
        deadLettered: 0,
        pending: 0,
        percent: 100,
      });
      expect(final.finishedAt).not.toBeNull();
      // Each task's own result is still the caller's.
      await expect(handles[1]!.result()).resolves.toBe('row 1');
      await expect(handles[7]!.result()).rejects.toThrow(/row 7 refused/);
      // The callback runs as a task with a stable id; onSuccess is not called when anything failed.
      await expect.poll(() => calls.length, { timeout: 10_000 }).toBe(1);
      expect(calls[0]).toMatchObject({ method: 'finished', taskId: `${job.jobId}:finished`, status: { total: 100, failed: failing } });
      // One item-error callback per failed task (at least once: a redelivered task would call it again, with the same id).
      await expect.poll(() => new Set(itemErrors.map((e) => e.index)).size, { timeout: 10_000 }).toBe(failing);
      expect(itemErrors.find((e) => e.index === 7)).toMatchObject({
        jobId: job.jobId,
        service: 'Rows',
        method: 'insert',
        args: [7],
        reason: 'nonRetryable',
        error: { name: 'NonRetryableError', message: 'row 7 refused' },
      });
      // status() answers from what the tracker published.
      expect(await job.status()).toEqual(final);
      // A job sealed takes no more tasks.
      await expect(job.dispatch(rows).insert(1000)).rejects.toThrow(/is sealed/);
    });

    test('a job where everything succeeds: onSuccess and onComplete; another client attaches and sees it finished', async () => {
      const calls: Array<{ method: string; taskId: string; status: JobStatus }> = [];
      const s = await start(calls);
      const rows = s.client.service<Rows>('Rows');
      const job = await s.client.job({ callbacks: { service: 'Callbacks', onSuccess: 'imported', onComplete: 'finished' } });
      await Promise.all([1, 2, 3, 4, 5, 6].map((i) => job.dispatch(rows).insert(i)));
      await job.seal();
      const final = await job.done({ timeoutMs: 30_000 });
      expect(final).toMatchObject({ total: 6, succeeded: 6, failed: 0, pending: 0 });
      await expect
        .poll(() => calls.map((c) => c.taskId).sort(), { timeout: 10_000 })
        .toEqual([`${job.jobId}:finished`, `${job.jobId}:imported`]);
      const other = await SheafClient.connect({ transport: s.transport, logger: testLogger });
      try {
        const attached = await other.attachJob(job.jobId);
        expect(await attached.done({ timeoutMs: 10_000 })).toEqual(final);
        // Listed by the tracker, newest first, with the same figures.
        expect((await other.listJobs({ limit: 10 })).find((listed) => listed.jobId === job.jobId)).toEqual(final);
        expect(() => attached.dispatch(rows)).toThrow(/attached, not created here/);
      } finally {
        await other.close();
      }
    });

    test("a client that attaches to one job holds every job's status: another job it never saw answers without asking the tracker", async () => {
      const s = await start([]);
      const rows = s.client.service<Rows>('Rows');
      const made = [];
      for (let j = 0; j < 3; j++) {
        const job = await s.client.job();
        await job.dispatch(rows).insert(j + 1);
        await job.seal();
        made.push({ job, final: await job.done({ timeoutMs: 30_000 }) });
      }
      const [first, second, third] = made;
      const requests = await s.transport.subscribe({
        topic: JOB_REQUESTS_TOPIC,
        subscription: `test-requests-${randomUUID()}`,
        maxUnacked: 100,
        durable: false,
      });
      const other = await SheafClient.connect({ transport: s.transport, logger: testLogger });
      try {
        // The first attach loads the table (one request for every job the tracker holds).
        expect(await (await other.attachJob(first!.job.jobId)).status()).toEqual(first!.final);
        expect(await (await other.attachJob(second!.job.jobId)).status()).toEqual(second!.final);
        expect(await (await other.attachJob(third!.job.jobId)).done({ timeoutMs: 1000 })).toEqual(third!.final);
        // What reached the tracker, up to a request sent last as a marker: the table's, and nothing per job
        // (but for the first, had the table been slower than its attach waits for it).
        const marker = await s.transport.createProducer(JOB_REQUESTS_TOPIC);
        await marker.send({ payload: encodeJobEvent({ v: 1, kind: 'jobStatusRequest', jobId: 'marker' }) });
        await marker.close();
        const seen: string[] = [];
        while (seen.at(-1) !== 'marker') {
          const decoded = decodeJobEvent((await requests.receive()).payload);
          if (!('event' in decoded)) continue;
          const { event } = decoded;
          if (event.kind === 'jobListRequest') seen.push(event.all ? 'table' : 'list');
          if (event.kind === 'jobStatusRequest') seen.push(event.jobId);
        }
        expect(seen.filter((what) => what !== first!.job.jobId)).toEqual(['table', 'marker']);
      } finally {
        await requests.close();
        await other.close();
      }
    });

    test('the worker whose tracker counts a job stops midway: another takes over, the job finishes once with every task counted', async () => {
      const calls: Array<{ method: string; taskId: string; status: JobStatus }> = [];
      const s = await start(calls);
      const Callbacks = callbackService(calls);
      // A second worker, with its own tracker waiting its turn.
      const second = new SheafWorker({
        transport: s.transport,
        logger: testLogger,
        name: 'second-worker',
        services: [
          { name: 'Rows', executor: { factory: () => new RowsImpl(), batch: { maxMessages: 20, maxSeconds: 0.05 } } },
          { name: 'Callbacks', executor: { factory: () => new Callbacks(), batch: { maxMessages: 1, maxSeconds: 0.05 } } },
        ],
      });
      await second.start();
      // Sees every snapshot the trackers write, to check the finished mark.
      const observer = await s.transport.subscribe({ topic: JOB_SNAPSHOTS_TOPIC, subscription: 'observer', maxUnacked: 10_000 });
      try {
        const rows = s.client.service<Rows>('Rows');
        const job = await s.client.job({ callbacks: { service: 'Callbacks', onComplete: 'finished' } });
        const first = await Promise.all([...Array(100).keys()].map((i) => job.dispatch(rows).insert(i)));
        await Promise.all(first.map((h) => h.result().catch(() => undefined)));
        // The first worker goes (its tracker is the active one on the in-memory transport; on Pulsar, one of the two).
        await s.worker.close();
        const rest = await Promise.all([...Array(100).keys()].map((i) => job.dispatch(rows).insert(100 + i)));
        await Promise.all(rest.map((h) => h.result().catch(() => undefined)));
        await job.seal();
        const final = await job.done({ timeoutMs: 30_000 });
        const failing = [...Array(200).keys()].filter((i) => i % 7 === 0).length;
        expect(final).toMatchObject({ total: 200, succeeded: 200 - failing, failed: failing, pending: 0 });
        await expect.poll(() => calls.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(1);
        expect(new Set(calls.map((c) => c.taskId))).toEqual(new Set([`${job.jobId}:finished`]));
        // Every snapshot that carries the finished mark carries the same one: it was set once.
        const marks = new Set<number>();
        const seen = (): number[] => {
          for (const m of observer.takeDelivered(10_000)) {
            const decoded = decodeJobEvent(m.payload);
            if ('event' in decoded && decoded.event.kind === 'jobState' && decoded.event.finishedAt !== null)
              marks.add(decoded.event.finishedAt);
          }
          return [...marks];
        };
        await expect.poll(seen, { timeout: 10_000 }).toEqual([final.finishedAt]);
      } finally {
        await observer.close();
        await second.close();
      }
    });

    test('addAll reads a large input as room frees up, at most inFlight dispatches under way; the job counts them all', async () => {
      const s = await start([]);
      const rows = s.client.service<Rows>('Rows');
      const job = await s.client.job({ name: 'bulk' });
      let read = 0;
      let dispatched = 0;
      let mostAhead = 0;
      async function* input(): AsyncGenerator<number> {
        for (let i = 1; i <= 2000; i++) {
          read += 1;
          mostAhead = Math.max(mostAhead, read - dispatched);
          yield i;
        }
      }
      const count = await job.addAll(input(), (row) => job.dispatch(rows, { fireAndForget: true }).insert(row), {
        inFlight: 50,
        onProgress: (n) => (dispatched = n),
      });
      expect(count).toBe(2000);
      expect(mostAhead).toBeLessThanOrEqual(51);
      // Fire-and-forget: the client keeps nothing per task; the job counts them.
      expect(s.client.pendingTasks).toBe(0);
      await job.seal();
      const final = await job.done({ timeoutMs: 30_000 });
      const failing = [...Array(2000).keys()].filter((i) => (i + 1) % 7 === 0).length;
      expect(final).toMatchObject({ total: 2000, succeeded: 2000 - failing, failed: failing, pending: 0 });
    });

    test('a resumable job whose dispatcher stops midway is resumed by another client: every item runs once, none is skipped', async () => {
      const ran = new Map<number, number>();
      class CountingRows {
        insert(_row: number): void {}
        @Batch('insert')
        async insertMany(rows: Map<string, number>): Promise<void> {
          for (const row of rows.values()) ran.set(row, (ran.get(row) ?? 0) + 1);
        }
      }
      system = await startSystem(
        [{ name: 'Rows', executor: { factory: () => new CountingRows(), batch: { maxMessages: 50, maxSeconds: 0.05 } } }],
        await target.create(),
      );
      const s = system;
      // The first dispatcher is "another process": on Pulsar its own connection, dropped without a goodbye.
      const own = s.transport instanceof PulsarTransport ? await pulsarTransport({ namespace: s.transport.namespace }) : null;
      const first = await SheafClient.connect({ transport: own ?? s.transport, logger: testLogger });
      const job = await first.job({ name: 'resumable', resumable: true });
      const items = 3000;
      const stopAt = 1700;
      function* rows(stopping: boolean): Generator<number> {
        for (let i = 0; i < items; i++) {
          if (stopping && i === stopAt) throw new Error('the dispatcher dies here');
          yield i;
        }
      }
      const firstStub = first.service<Rows>('Rows');
      await expect(
        job.addAll(rows(true), (row) => job.dispatch(firstStub, { fireAndForget: true }).insert(row), { inFlight: 100 }),
      ).rejects.toThrow(/dies here/);
      if (own) await own.close(); // its producers go with the connection, as when a process is killed
      // (in memory the first client stays: one process, nothing to kill)

      const resumed = await s.client.resumeJob(job.jobId);
      expect(resumed.resumedAt).toBeLessThanOrEqual(stopAt);
      const stub = s.client.service<Rows>('Rows');
      const count = await resumed.addAll(rows(false), (row) => resumed.dispatch(stub, { fireAndForget: true }).insert(row), {
        inFlight: 100,
      });
      expect(count).toBe(items - resumed.resumedAt);
      // Everything between the checkpoint and where it stopped was stored already: dropped by the broker, not sent twice.
      expect(resumed.deduplicated).toBe(stopAt - resumed.resumedAt);
      await resumed.seal();
      expect(await resumed.done({ timeoutMs: 60_000 })).toMatchObject({ total: items, succeeded: items, pending: 0 });
      expect(ran.size).toBe(items);
      expect([...ran.values()].filter((n) => n !== 1)).toEqual([]);
      if (!own) await first.close();
    });

    test('resumeJob of a job with no checkpoint on the broker is a JobResumeError that says what to check', async () => {
      const s = await start([]);
      const plain = await s.client.job(); // not resumable: nothing kept to resume from
      await expect(s.client.resumeJob(plain.jobId)).rejects.toMatchObject({
        name: 'JobResumeError',
        jobId: plain.jobId,
        message: expect.stringMatching(/no checkpoint.*deduplication/),
      });
      await expect(s.client.resumeJob('../etc/passwd')).rejects.toMatchObject({ name: 'ConfigError' });
    });

    test('continueOnError false: the first failure finishes the job as stopped; its later tasks are cancelled, not run', async () => {
      const calls: Array<{ method: string; taskId: string; status: JobStatus }> = [];
      const ran: number[] = [];
      const Callbacks = callbackService(calls);
      class RecordingRows {
        insert(_row: number): void {}
        @Batch('insert')
        async insertMany(rows: Map<string, number>): Promise<Map<string, string | Error>> {
          ran.push(...rows.values());
          return new Map([...rows].map(([id, row]) => [id, row < 0 ? new NonRetryableError(`row ${row} refused`) : `row ${row}`]));
        }
      }
      system = await startSystem(
        [
          { name: 'Rows', executor: { factory: () => new RecordingRows(), batch: { maxMessages: 20, maxSeconds: 0.05 } } },
          { name: 'Callbacks', executor: { factory: () => new Callbacks(), batch: { maxMessages: 1, maxSeconds: 0.05 } } },
        ],
        await target.create(),
      );
      const s = system;
      const rows = s.client.service<Rows>('Rows');
      const job = await s.client.job({ continueOnError: false, callbacks: { service: 'Callbacks', onComplete: 'finished' } });
      const handles = await Promise.all([1, 2, 3].map((row) => job.dispatch(rows).insert(row)));
      await Promise.all(handles.map((h) => h.result()));
      await expect((await job.dispatch(rows).insert(-1)).result()).rejects.toThrow(/row -1 refused/);
      // Finished at the first failure, before any seal: nothing more is waited for.
      const stopped = await job.done({ timeoutMs: 30_000 });
      expect(stopped).toMatchObject({ stopped: true, succeeded: 3, failed: 1, sealed: false, pending: 0, cancelled: null });
      await expect.poll(() => calls.map((c) => c.taskId), { timeout: 10_000 }).toEqual([`${job.jobId}:finished`]);
      expect(calls[0]!.status).toMatchObject({ stopped: true, failed: 1 });
      // The client refuses more tasks of the job...
      await expect(job.dispatch(rows).insert(4)).rejects.toMatchObject({ name: 'JobStoppedError', jobId: job.jobId });
      // ...and a worker that has heard of the stop cancels the ones that come anyway (sent here as another dispatcher would).
      const stoppedJobs = (s.worker as unknown as { stoppedJobs: { has(id: string): boolean } }).stoppedJobs;
      await expect.poll(() => stoppedJobs.has(job.jobId), { timeout: 10_000 }).toBe(true);
      const producer = await s.transport.createProducer(taskTopic('Rows'));
      const late = [10, 11, 12].map((index) => ({
        ...rawTask(`late-${index}`, 'Rows', 'insert', [100 + index]),
        job: { id: job.jobId, index },
      }));
      for (const task of late) await producer.send({ payload: encodeEnvelope(task) });
      await producer.close();
      await expect
        .poll(
          () =>
            s.settlements
              .filter((r) => r.settlement === 'cancelled')
              .map((r) => r.taskId)
              .sort(),
          { timeout: 10_000 },
        )
        .toEqual(['late-10', 'late-11', 'late-12']);
      expect(ran.filter((row) => row >= 100)).toEqual([]);
      await job.seal();
      await expect.poll(async () => (await job.status()).total, { timeout: 10_000 }).toBe(4);
      expect(await job.status()).toMatchObject({ stopped: true, total: 4, cancelled: 0, pending: 0, finishedAt: stopped.finishedAt });
    });

    test('results(): each task of the job once, with its value or error, ending once the job is sealed and all are in', async () => {
      const s = await start([]);
      const rows = s.client.service<Rows>('Rows');
      const job = await s.client.job({ keepResults: true });
      const read: Promise<Array<{ index: number; outcome: string; value?: unknown; error?: Error }>> = (async () => {
        const seen = [];
        for await (const result of job.results()) seen.push(result);
        return seen;
      })();
      const handles = await Promise.all([...Array(30).keys()].map((row) => job.dispatch(rows).insert(row)));
      await job.dispatch(rows, { fireAndForget: true }).insert(1000); // counted by the job, no result to list
      await job.seal();
      const results = await read;
      expect(results.map((r) => r.index).sort((a, b) => a - b)).toEqual([...Array(30).keys()]);
      expect(results.find((r) => r.index === 3)).toMatchObject({ outcome: 'succeeded', value: 'row 3', taskId: handles[3]!.id });
      expect(results.find((r) => r.index === 7)).toMatchObject({ outcome: 'failed', error: { name: 'TaskFailedError' } });
      // A job that does not keep results says how to get them.
      const plain = await s.client.job();
      expect(() => plain.results()).toThrow(/keepResults: true/);
    });

    test('an empty job sealed at once finishes; a status nobody tracks is a JobWaitError naming the job', async () => {
      const s = await start([]);
      const job = await s.client.job();
      await job.seal();
      expect(await job.done({ timeoutMs: 30_000 })).toMatchObject({ total: 0, percent: 100 });
      const ghost = await s.client.attachJob('job-nobody-made');
      await expect(ghost.done({ timeoutMs: 300 })).rejects.toMatchObject({ name: 'JobWaitError', jobId: 'job-nobody-made' });
    });
  });
}
