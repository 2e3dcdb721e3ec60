/**
 * Workers report each final outcome of a job task to the job-events topic,
 * keyed by job id, with the task's index: succeeded, failed for good,
 * dead-lettered (never runnable). Tasks without a job, and outcomes that are
 * not final (a retry), report nothing.
 */
import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { NonRetryableError } from '../../src/errors.js';
import { Batch } from '../../src/service/decorators.js';
import { JOB_EVENTS_TOPIC, taskTopic } from '../../src/topics.js';
import type { Consumer, ReceivedMessage } from '../../src/transport/transport.js';
import { encodeEnvelope } from '../../src/wire/envelopes.js';
import { decodeJobEvent } from '../../src/wire/job-events.js';
import { startSystem, type System } from '../support/system.js';
import { rawTask } from '../support/tasks.js';
import { transportTargets } from '../support/transports.js';

class Jobs {
  ok(_v: string): void {}
  refuse(_v: string): void {}
  @Batch('ok')
  async okMany(tasks: Map<string, string>): Promise<Map<string, string>> {
    return new Map([...tasks].map(([id, v]) => [id, `ok ${v}`]));
  }
  @Batch('refuse')
  async refuseMany(tasks: Map<string, string>): Promise<Map<string, Error>> {
    return new Map([...tasks.keys()].map((id) => [id, new NonRetryableError('refused')]));
  }
}

for (const target of transportTargets()) {
  describe.skipIf(target.skip)(`job events from workers (${target.name})`, () => {
    let system: System | undefined;
    let observer: Consumer | undefined;
    afterEach(async () => {
      await observer?.close();
      await system?.stop();
      system = observer = undefined;
    });

    test('each final outcome of a job task is reported once with its index; tasks without a job report nothing', async () => {
      system = await startSystem(
        [{ name: 'Jobs', executor: { factory: () => new Jobs(), batch: { maxMessages: 10, maxSeconds: 0.05 } } }],
        await target.create(),
      );
      // Beside the worker's own tracker: a subscription of its own sees every event.
      observer = await system.transport.subscribe({ topic: JOB_EVENTS_TOPIC, subscription: 'observer', maxUnacked: 100 });
      const jobId = `job-${randomUUID()}`;
      const producer = await system.transport.createProducer(taskTopic('Jobs'));
      const send = (taskId: string, method: string, job?: { id: string; index: number }) =>
        producer.send({ payload: encodeEnvelope({ ...rawTask(taskId, 'Jobs', method, ['x']), ...(job ? { job } : {}) }) });
      await send('no-job', 'ok');
      await send('t0', 'ok', { id: jobId, index: 0 });
      await send('t1', 'refuse', { id: jobId, index: 1 });
      await send('t2', 'noSuchMethod', { id: jobId, index: 2 });
      await producer.close();
      const events: Array<{ jobId: string; index: number; outcome: string }> = [];
      const settledEvents = (messages: readonly ReceivedMessage[]): Array<{ jobId: string; index: number; outcome: string }> =>
        messages.flatMap((message) => {
          expect(message.key).toBe(jobId);
          const decoded = decodeJobEvent(message.payload);
          if (!('event' in decoded)) throw new Error(decoded.problem);
          const event = decoded.event;
          return event.kind === 'tasksSettled' ? event.tasks.map(([index, outcome]) => ({ jobId: event.jobId, index, outcome })) : [];
        });
      while (events.length < 3) events.push(...settledEvents([await observer.receive()]));
      expect(events.map((e) => [e.jobId, e.index, e.outcome]).sort()).toEqual([
        [jobId, 0, 'succeeded'],
        [jobId, 1, 'failed'],
        [jobId, 2, 'deadLettered'],
      ]);
      // The task without a job was settled too (reports come after the ack, so awaited), and reported nothing.
      await vi.waitFor(() => expect(system!.settlements.map((s) => s.taskId).sort()).toEqual(['no-job', 't0', 't1', 't2']));
      expect(settledEvents(observer.takeDelivered(100))).toEqual([]);
    });
  });
}
