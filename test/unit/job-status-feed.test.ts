/**
 * A client's job statuses: kept for the jobs it follows, at most 10,000 of
 * them; the oldest is let go first, unless something waits on it. Once its
 * table is loaded (a client that attaches to jobs), every job's.
 */
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { JobStatusFeed } from '../../src/client/job-status-feed.js';
import { JOB_ANSWERS_TOPIC, JOB_REQUESTS_TOPIC, JOB_STATE_TOPIC } from '../../src/topics.js';
import { InMemoryTransport } from '../../src/transport/memory/in-memory-transport.js';
import type { Producer } from '../../src/transport/transport.js';
import { decodeJobEvent, encodeJobEvent, type JobListRequest, type JobStatus } from '../../src/wire/job-events.js';
import { testLogger } from '../support/logger.js';

const status = (jobId: string): JobStatus => ({
  jobId,
  name: undefined,
  total: 1,
  sealed: true,
  succeeded: 0,
  failed: 0,
  deadLettered: 0,
  pending: 1,
  percent: 0,
  startedAt: 1,
  finishedAt: null,
  stopped: false,
  cancelled: 0,
});

describe('JobStatusFeed', () => {
  let transport: InMemoryTransport;
  let feed: JobStatusFeed;
  /** Statuses as a tracker publishes them. */
  let statuses: Producer;
  beforeEach(async () => {
    transport = new InMemoryTransport();
    feed = await JobStatusFeed.open(transport, 'c', testLogger);
    statuses = await transport.createProducer(JOB_STATE_TOPIC);
  });
  afterEach(async () => {
    await feed.close();
    await transport.close();
  });

  test('keeps the statuses of the last 10,000 jobs followed; a job waited on stays', async () => {
    feed.follow('oldest');
    feed.follow('waited-on');
    const waiting = feed.waitFor('waited-on', (s) => s.finishedAt !== null, 10_000, undefined, 'not finished');
    await statuses.send({ payload: encodeJobEvent({ v: 1, kind: 'jobStatus', status: status('oldest') }) });
    await vi.waitFor(() => expect(feed.last('oldest')).toMatchObject({ jobId: 'oldest' }));
    for (let i = 0; i < 10_000; i++) feed.follow(`job-${i}`);
    expect(feed.last('oldest')).toBeUndefined();
    await statuses.send({ payload: encodeJobEvent({ v: 1, kind: 'jobStatus', status: { ...status('waited-on'), finishedAt: 5 } }) });
    await expect(waiting).resolves.toMatchObject({ jobId: 'waited-on', finishedAt: 5 });
  });

  test('among many statuses of other jobs (skipped unread), the status of the followed job is read and kept', async () => {
    feed.follow('mine');
    for (let i = 0; i < 50; i++)
      await statuses.send({ payload: encodeJobEvent({ v: 1, kind: 'jobStatus', status: status(`other-${i}`) }) });
    await statuses.send({ payload: encodeJobEvent({ v: 1, kind: 'jobStatus', status: status('mine') }) });
    await vi.waitFor(() => expect(feed.last('mine')).toMatchObject({ jobId: 'mine' }));
    expect(feed.last('other-0')).toBeUndefined();
  });

  test('a status from a lower tracker epoch, or behind the one kept, does not take a job back; a newer one does', async () => {
    const send = (epoch: number, succeeded: number, finishedAt: number | null = null): Promise<string> =>
      statuses.send({
        payload: encodeJobEvent({
          v: 1,
          kind: 'jobStatus',
          status: { ...status('j'), total: 3, succeeded, pending: 3 - succeeded, finishedAt },
          epoch,
        }),
      });
    // Statuses are read in order: once this one of another job is read, every status sent before it was.
    let posts = 0;
    const readSoFar = async (): Promise<void> => {
      posts += 1;
      await statuses.send({ payload: encodeJobEvent({ v: 1, kind: 'jobStatus', status: { ...status('post'), succeeded: posts } }) });
      await vi.waitFor(() => expect(feed.last('post')?.succeeded).toBe(posts));
    };
    feed.follow('j');
    feed.follow('post');
    await send(2, 1);
    await readSoFar();
    expect(feed.last('j')).toMatchObject({ succeeded: 1 });
    // A tracker that lost its term wakes and answers from what it had: not kept, even further along.
    await send(1, 2);
    // The same tracker's status that crossed a newer one on the other topic: not kept.
    await send(2, 0);
    await readSoFar();
    expect(feed.last('j')).toMatchObject({ succeeded: 1 });
    await send(2, 3, 9);
    await send(2, 3, null); // unfinished after finished: behind
    await readSoFar();
    expect(feed.last('j')).toMatchObject({ succeeded: 3, finishedAt: 9 });
    await send(3, 3, 10); // the next tracker, once it has taken over: kept
    await readSoFar();
    expect(feed.last('j')).toMatchObject({ succeeded: 3, finishedAt: 10 });
  });

  test('a list nobody answers is a JobWaitError without a job, saying what to check; a limit past 1,000 is refused at once', async () => {
    const error = await feed.list(10, 100).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'JobWaitError', jobId: undefined, waitedMs: 100 });
    expect((error as Error).message).toMatch(
      /no job tracker answered a list within 100 ms \(is a sheaf worker running, with jobs.tracker on\?\)/,
    );
    await expect(feed.list(1001, 100)).rejects.toThrow(/limit must be an integer from 1 to 1000 \(got 1001\)/);
  });

  describe('its table of every job', () => {
    /** A tracker's answers to table requests: `parts(request)` says what each part holds. */
    async function answerTables(parts: (request: JobListRequest) => JobStatus[][]): Promise<() => Promise<void>> {
      const requests = await transport.subscribe({ topic: JOB_REQUESTS_TOPIC, subscription: 'tracker', maxUnacked: 100 });
      const answers = await transport.createProducer(JOB_ANSWERS_TOPIC);
      const stop = new AbortController();
      const answering = (async () => {
        while (!stop.signal.aborted) {
          const message = await requests.receive(stop.signal).catch(() => null);
          if (!message) return;
          const decoded = decodeJobEvent(message.payload);
          if (!('event' in decoded) || decoded.event.kind !== 'jobListRequest' || !decoded.event.all) continue;
          const request = decoded.event;
          const all = parts(request);
          for (const [index, statuses] of all.entries()) {
            const part = { index, count: all.length };
            await answers.send({
              payload: encodeJobEvent({ v: 1, kind: 'jobList', requestId: request.requestId, statuses, epoch: 2, part }),
            });
          }
        }
      })();
      return async () => {
        stop.abort();
        await answering;
        await requests.close();
      };
    }

    test('loads every job the tracker holds, in parts; a part behind a status already kept does not take its job back', async () => {
      let sent = 0;
      const stop = await answerTables(() => {
        sent += 1;
        return [[status('a'), { ...status('b'), succeeded: 1, pending: 0 }], [status('c')]];
      });
      // Heard before the table's answer: 'b' further along than the answer says.
      feed.follow('b');
      await statuses.send({
        payload: encodeJobEvent({ v: 1, kind: 'jobStatus', status: { ...status('b'), succeeded: 1, pending: 0, finishedAt: 7 }, epoch: 2 }),
      });
      await vi.waitFor(() => expect(feed.last('b')?.finishedAt).toBe(7));
      await expect(feed.loadTable()).resolves.toBe(true);
      expect(feed.last('a')).toMatchObject({ jobId: 'a' });
      expect(feed.last('c')).toMatchObject({ jobId: 'c' });
      expect(feed.last('b')).toMatchObject({ finishedAt: 7 });
      // From now on the statuses of jobs nobody here follows are kept too.
      await statuses.send({ payload: encodeJobEvent({ v: 1, kind: 'jobStatus', status: status('d'), epoch: 2 }) });
      await vi.waitFor(() => expect(feed.last('d')).toMatchObject({ jobId: 'd' }));
      // Loaded once: asking again sends nothing.
      await expect(feed.loadTable()).resolves.toBe(true);
      expect(sent).toBe(1);
      await stop();
    });

    test('keeps at most 50,000 statuses: the oldest of a job nobody follows is let go first', async () => {
      feed.follow('followed-first');
      const many = [...Array(51).keys()].map((p) =>
        [...Array(1000).keys()].map((i) => status(p === 0 && i === 0 ? 'followed-first' : `job-${p}-${i}`)),
      );
      const stop = await answerTables(() => many);
      await expect(feed.loadTable()).resolves.toBe(true);
      expect(feed.last('followed-first')).toMatchObject({ jobId: 'followed-first' });
      expect(feed.last('job-0-1')).toBeUndefined();
      // 51,000 statuses: the 1,000 kept longest that nobody follows are let go.
      expect(feed.last('job-0-999')).toBeUndefined();
      expect(feed.last('job-1-0')).toBeUndefined();
      expect(feed.last('job-1-1')).toMatchObject({ jobId: 'job-1-1' });
      expect(feed.last('job-50-999')).toMatchObject({ jobId: 'job-50-999' });
      await stop();
    });

    test('a table nobody answers is not waited on by close(): the load resolves false at once', async () => {
      const loading = feed.loadTable();
      let settled: boolean | undefined;
      void loading.then((loaded) => (settled = loaded));
      await feed.close();
      // Settled by the close itself, within the next turn, not by the 10 s bound of an unanswered load.
      await new Promise((resolve) => setImmediate(resolve));
      expect(settled).toBe(false);
      feed = await JobStatusFeed.open(transport, 'c2', testLogger); // for afterEach
    });
  });
});
