// Sheaf's public API, named one by one. Anything not exported here is internal.
import 'reflect-metadata';

export { Batch, Params } from './service/decorators.js';
export type { BatchOptions, BatchMethod, Class, MethodDecoratorOfEitherForm } from './service/decorators.js';

export { Task } from './worker/context.js';
export type { TaskContext, BatchContext } from './worker/context.js';

export { SheafClient } from './client/client.js';
export type { ClientOptions, DispatchOptions, ServiceStubOptions, TaskHandles } from './client/client.js';
export type { ResultOptions, TaskHandle } from './client/task-handle.js';
export { Job } from './client/job.js';
export type { JobOptions } from './client/job.js';
export type { JobStatus, JobCallbacks, JobItemError } from './wire/job-events.js';
export type { JobTaskResult } from './client/job-results.js';

export { SheafWorker } from './worker/worker.js';
export type { WorkerState } from './worker/worker.js';
export type { WorkerOptions, ServiceOptions, ExecutorOptions } from './worker/options.js';
export type { WorkerEvents, BatchReport, TaskReport, TaskSettlement } from './worker/events.js';
export type { FlushReason, BatchLimits } from './worker/batch-buffer.js';
export type { RetryOptions } from './worker/retry-policy.js';
export { EXECUTOR_DEFAULTS } from './config/executor-schema.js';

export type { Transport, Producer, Consumer, OutgoingMessage, ReceivedMessage, SubscribeOptions } from './transport/transport.js';
export { InMemoryTransport } from './transport/memory/in-memory-transport.js';
export type { InMemoryTransportOptions } from './transport/memory/in-memory-transport.js';
export { PulsarTransport } from './transport/pulsar/pulsar-transport.js';
export type { PulsarTransportOptions } from './transport/pulsar/pulsar-transport.js';
export { NamespaceNotFoundError, PulsarConnectionError, PulsarServerError } from './transport/pulsar/errors.js';
export { ProtocolError } from './transport/pulsar/frames.js';

export { taskTopic, deadLetterTopic, resultTopic, isResultTopic, WORKER_SUBSCRIPTION, DEAD_LETTER_SUBSCRIPTION } from './topics.js';
export { decodeDeadLetter, decodeTask, decodeResult, decodeResults } from './wire/envelopes.js';
export type {
  TaskEnvelope,
  ResultEnvelope,
  ResultBatchEnvelope,
  DeadLetterEnvelope,
  DeadLetterReason,
  TaskMeta,
} from './wire/envelopes.js';
export type { ErrorInfo } from './wire/error-info.js';

export type { Clock } from './util/clock.js';

export {
  SheafError,
  ConfigError,
  ServiceDefinitionError,
  NonRetryableError,
  TaskFailedError,
  TaskTimeoutError,
  MissingResultError,
  BatchContractError,
  WrongArgumentsError,
  DecodeError,
  TaskContextError,
  TransportClosedError,
  LifecycleError,
  ShutdownTimeoutError,
  RemoteTaskError,
  ResultTimeoutError,
  JobResumeError,
  JobStoppedError,
  JobWaitError,
  UnknownMethodError,
  UnknownServiceError,
  MessageTooLargeError,
  ProducerBusyError,
  ProducerFencedError,
  SendTimeoutError,
  BadReplyToError,
} from './errors.js';
export type { ConfigIssue } from './errors.js';
