import type { MethodDefinition } from '../../src/service/registry.js';
import type { ReceivedTask } from '../../src/worker/received-task.js';
import type { FlushedBatch } from '../../src/worker/batch-buffer.js';
import type { DeadLetterEnvelope, TaskEnvelope } from '../../src/wire/envelopes.js';

/** A received task as the executor sees it, without a transport. */
export function receivedTask(taskId: string, method: MethodDefinition, input: unknown, batchKey: string | null = 'k'): ReceivedTask {
  return {
    message: { id: taskId, topic: 't', payload: new Uint8Array(10), key: undefined, properties: {}, redeliveryCount: 0, publishTime: 0 },
    envelope: {
      v: 1,
      kind: 'task',
      taskId,
      service: 'S',
      method: method.name,
      args: [input],
      meta: batchKey === null ? {} : { batchKey },
      tags: [],
      replyTo: null,
      retryIndex: 0,
      retrySequence: 0,
      lastError: null,
      dispatchedAt: 0,
    },
    method,
    args: [input],
    input,
    bytes: 10,
    batchKey,
    receivedAt: 0,
  };
}

export function flushed(items: ReceivedTask[], method: string, batchKey: string | null = 'k'): FlushedBatch<ReceivedTask> {
  return { group: { method, batchKey }, items, bytes: items.length * 10, reason: 'maxMessages', openedAt: 0, flushedAt: 5 };
}

/** A valid task envelope as raw JSON fields, for tests that publish bytes by hand. */
export function rawTask(taskId: string, service: string, method: string, args: unknown[]) {
  return {
    v: 1 as const,
    kind: 'task' as const,
    taskId,
    service,
    method,
    args,
    meta: {},
    tags: [],
    replyTo: null,
    retryIndex: 0,
    retrySequence: 0,
    lastError: null,
    dispatchedAt: Date.now(),
  };
}

/** A valid dead letter, for tests that put one on a dead-letter topic by hand; `fields` override the defaults. */
export function rawDeadLetter(task: TaskEnvelope | null, fields: Partial<DeadLetterEnvelope> = {}): DeadLetterEnvelope {
  return {
    v: 1,
    kind: 'deadLetter',
    reason: task ? 'nonRetryable' : 'undecodable',
    detail: 'd',
    error: null,
    attempts: task ? 1 : 0,
    task,
    payloadBase64: task ? null : '',
    worker: 'test',
    deadAt: Date.now(),
    ...fields,
  };
}
