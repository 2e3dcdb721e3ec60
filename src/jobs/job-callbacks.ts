/**
 * A finished job's callbacks (`onSuccess` when nothing failed, `onComplete`
 * always): Sheaf tasks on the service the job names, with stable task ids
 * (`<jobId>:<method>`), so that a tracker that dispatches them again after
 * a crash sends the same tasks (at least once; docs/jobs.md).
 */
import { taskTopic, WORKER_SUBSCRIPTION } from '../topics.js';
import { KeptProducers } from '../transport/kept-producers.js';
import type { Transport } from '../transport/transport.js';
import type { Clock } from '../util/clock.js';
import { encodeEnvelope, jobCallbackTask } from '../wire/envelopes.js';
import type { JobProgress } from './progress.js';

/** Dispatches job callbacks; owns the producers it opens for them. */
export class JobCallbackDispatcher {
  /** Callbacks go to task topics, made with the workers' subscription as a client does. */
  private readonly producers: KeptProducers;

  constructor(
    transport: Transport,
    private readonly clock: Clock,
  ) {
    this.producers = new KeptProducers(transport, { subscription: WORKER_SUBSCRIPTION });
  }

  /** Dispatches the callbacks the finished job gets, one after another; rejects with the first failure (the caller tries again). */
  async dispatch(progress: JobProgress): Promise<void> {
    const target = progress.callbackTarget;
    if (!target) return;
    const status = progress.status();
    const methods: string[] = [];
    if (target.onSuccess && status.failed === 0 && status.deadLettered === 0) methods.push(target.onSuccess);
    if (target.onComplete) methods.push(target.onComplete);
    for (const method of methods) {
      const envelope = jobCallbackTask(
        { service: target.service, method },
        `${progress.jobId}:${method}`,
        progress.jobId,
        status,
        this.clock.now(),
      );
      const producer = await this.producers.get(taskTopic(target.service));
      await producer.send({ payload: encodeEnvelope(envelope), key: progress.jobId, properties: { 'sheaf-task-id': envelope.taskId } });
    }
  }

  close(): Promise<void> {
    return this.producers.close();
  }
}
