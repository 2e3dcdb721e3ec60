/**
 * Sheaf's error classes. Each has a stable `name` (safe to match on after the
 * error crossed the wire as an `ErrorInfo`), an optional `cause`, and typed
 * fields for what a caller needs to act on the error.
 */

/** Base class: every error Sheaf itself raises is a `SheafError`. */
export class SheafError extends Error {
  override name = 'SheafError';
  /**
   * What service code wants to travel with the error to the dead letter and
   * the client (`new NonRetryableError('quota', { details: { quota: 10 } })`).
   * It is the only own data of an error that leaves the worker; string
   * values that look like credentials are redacted (docs/security.md).
   */
  readonly details?: Readonly<Record<string, unknown>>;
  constructor(message: string, options?: { cause?: unknown; details?: Readonly<Record<string, unknown>> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    if (options?.details !== undefined) this.details = options.details;
  }
}

export interface ConfigIssue {
  /** Where the problem is, e.g. `services[0].executor.batch.maxMessages`. */
  readonly path: string;
  /** What is wrong and, where we can tell, how to fix it. */
  readonly message: string;
}

/** Invalid options or configuration. Lists every problem found, not just the first. */
export class ConfigError extends SheafError {
  override name = 'ConfigError';
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[], options?: { source?: string; cause?: unknown }) {
    const where = options?.source ? ` in ${options.source}` : '';
    const lines = issues.map((i) => `  - ${i.path === '' ? '(root)' : i.path}: ${i.message}`);
    super(`Invalid configuration${where} (${issues.length} problem${issues.length === 1 ? '' : 's'}):\n${lines.join('\n')}`, options);
    this.issues = issues;
  }
}

/** A service class whose @Batch declarations cannot work. Names the class and the method. */
export class ServiceDefinitionError extends SheafError {
  override name = 'ServiceDefinitionError';
  constructor(
    readonly className: string,
    readonly methodName: string,
    problem: string,
  ) {
    super(`${className}.${methodName}: ${problem}`);
  }
}

/**
 * Thrown by a task (or set as a batch entry) to fail it without retrying,
 * whatever the retry policy says.
 */
export class NonRetryableError extends SheafError {
  override name = 'NonRetryableError';
}

/** One execution (a single task, or a whole batch) ran past `timeoutSeconds`. */
export class TaskTimeoutError extends SheafError {
  override name = 'TaskTimeoutError';
  constructor(readonly timeoutSeconds: number) {
    super(`execution did not finish within timeoutSeconds=${timeoutSeconds}`);
  }
}

/**
 * The client stopped waiting for a task's result (`handle.result({ timeoutMs })`
 * or the client's `defaultResultTimeoutSeconds`). The task itself is not
 * cancelled: it may still run, and its late result is ignored.
 */
export class ResultTimeoutError extends TaskTimeoutError {
  override name = 'ResultTimeoutError';
  constructor(
    readonly taskId: string,
    readonly serviceName: string,
    readonly methodName: string,
    /** How long the caller waited, in milliseconds. */
    readonly waitedMs: number,
  ) {
    super(waitedMs / 1000);
    this.message =
      `no result for task ${serviceName}.${methodName} (${taskId}) after ${waitedMs} ms; ` +
      'the task is not cancelled (it may still run). Is a worker serving this service? Wait longer with result({ timeoutMs })';
  }
}

/** A batch method's result map had no entry for a task of the batch. */
export class MissingResultError extends SheafError {
  override name = 'MissingResultError';
  constructor(
    readonly taskId: string,
    readonly batchMethod: string,
  ) {
    super(`batch method ${batchMethod} returned no entry for task ${taskId}; return one entry (a value or an Error) per task id`);
  }
}

/** A batch method broke its contract (returned something that is not a Map, or unknown task ids). */
export class BatchContractError extends SheafError {
  override name = 'BatchContractError';
  constructor(
    readonly batchMethod: string,
    problem: string,
  ) {
    super(`batch method ${batchMethod}: ${problem}`);
  }
}

/** A task's arguments do not fit the task method's declared parameters. Never retried. */
export class WrongArgumentsError extends SheafError {
  override name = 'WrongArgumentsError';
}

/** A task names a method its service does not have. Never retried. */
export class UnknownMethodError extends SheafError {
  override name = 'UnknownMethodError';
  constructor(
    readonly serviceName: string,
    readonly methodName: string,
    readonly knownMethods: readonly string[],
  ) {
    super(`${serviceName} has no task method '${methodName}' (it has: ${knownMethods.join(', ')})`);
  }
}

/** A task arrived on the task topic of another service. Never retried. */
export class UnknownServiceError extends SheafError {
  override name = 'UnknownServiceError';
  constructor(
    readonly serviceName: string,
    readonly topicService: string,
  ) {
    super(`task is for service '${serviceName}' but arrived on the task topic of '${topicService}'`);
  }
}

/** A message's bytes are not a task envelope Sheaf can read. Never retried. */
export class DecodeError extends SheafError {
  override name = 'DecodeError';
}

/**
 * A task's `replyTo` is not a client result topic (`sheaf-results-<client>`):
 * a worker never publishes there. The task is dead-lettered (`badReplyTo`).
 */
export class BadReplyToError extends SheafError {
  override name = 'BadReplyToError';
  constructor(
    /** What the task asked for, shortened to 200 characters. */
    readonly replyTo: string,
  ) {
    super(
      `replyTo ${JSON.stringify(replyTo)} is not a client result topic (sheaf-results-<client name> in the worker's own namespace); ` +
        'a worker publishes results nowhere else. Dispatch with SheafClient, which sets it',
    );
  }
}

/** `Task.context()`, `Task.contextOf()` or `Task.batch()` called where there is no such context. */
export class TaskContextError extends SheafError {
  override name = 'TaskContextError';
}

/** The transport, producer or consumer was closed; the operation cannot proceed. */
export class TransportClosedError extends SheafError {
  override name = 'TransportClosedError';
}

/** A worker or client method called in a lifecycle state that does not allow it. */
export class LifecycleError extends SheafError {
  override name = 'LifecycleError';
}

/**
 * A wait on a job (`job.status()`, `job.done()`) ended before the job's
 * tracker answered or the job finished, or a wait for the tracker's list of
 * jobs (`client.listJobs()`) ended unanswered. The job goes on; wait again later.
 */
export class JobWaitError extends SheafError {
  override name = 'JobWaitError';
  constructor(
    /** The job waited on; undefined for a wait on the list of jobs. */
    readonly jobId: string | undefined,
    /** How long the caller waited, in milliseconds. */
    readonly waitedMs: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A job stopped at its first failed task (`continueOnError: false`): it takes
 * no more tasks, and its tasks that had not run are cancelled.
 */
export class JobStoppedError extends SheafError {
  override name = 'JobStoppedError';
  constructor(readonly jobId: string) {
    super(`job ${jobId} stopped at its first failed task (continueOnError: false): it takes no more tasks`);
  }
}

/**
 * A job could not be resumed (`client.resumeJob`, `sheaf job run --resume`):
 * the broker holds no checkpoint of its dispatch. The message says which of
 * the causes to check (a wrong id, deduplication off, a checkpoint older than
 * the broker keeps).
 */
export class JobResumeError extends SheafError {
  override name = 'JobResumeError';
  constructor(
    readonly jobId: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A worker's graceful stop ran out of time (`shutdownGraceSeconds`): it
 * closed what it could and left tasks unsettled. Nothing is lost: the broker
 * redelivers them to other workers.
 */
export class ShutdownTimeoutError extends LifecycleError {
  override name = 'ShutdownTimeoutError';
  constructor(
    readonly graceSeconds: number,
    /** Tasks received and not settled, per service. */
    readonly unsettled: Readonly<Record<string, number>>,
  ) {
    const total = Object.values(unsettled).reduce((n, x) => n + x, 0);
    const perService = Object.entries(unsettled)
      .map(([service, n]) => `${service}: ${n}`)
      .join(', ');
    super(
      `the drain did not end within shutdownGraceSeconds (${graceSeconds} s): ${total} tasks left unsettled` +
        `${total > 0 ? ` (${perService})` : ''}; the broker redelivers them`,
    );
  }
}

/** The error a worker reported for a task, rebuilt on the client side. */
export class RemoteTaskError extends SheafError {
  override name: string;
  readonly remoteStack: string | undefined;
  readonly data: unknown;
  constructor(info: { name: string; message: string; stack?: string | undefined; data?: unknown }, cause?: unknown) {
    super(info.message, cause === undefined ? undefined : { cause });
    this.name = info.name;
    this.remoteStack = info.stack;
    this.data = info.data;
  }
}

/**
 * A task that finally failed: retries exhausted, a non-retryable error, or a
 * task that could never run (bad arguments, unknown method, undecodable).
 */
export class TaskFailedError extends SheafError {
  override name = 'TaskFailedError';
  constructor(
    readonly taskId: string,
    readonly serviceName: string,
    readonly methodName: string,
    /** Executions made in the last retry sequence (0 when the task could never run). */
    readonly attempts: number,
    /** Why it ended: `retriesExhausted`, `nonRetryable`, or a dead-letter reason. */
    readonly reason: string,
    readonly lastError: RemoteTaskError,
  ) {
    super(
      `task ${serviceName}.${methodName} (${taskId}) failed after ${attempts} attempt${attempts === 1 ? '' : 's'} (${reason}): ${lastError.name}: ${lastError.message}`,
      { cause: lastError },
    );
  }
}

/**
 * A message larger than the broker accepts (its `maxMessageSize`, 5 MiB by
 * default). Nothing was sent. Send less per task, raise the broker's limit,
 * or turn on `producer.chunking`.
 */
export class MessageTooLargeError extends SheafError {
  override name = 'MessageTooLargeError';
  constructor(
    readonly topic: string,
    /** The payload's size in bytes (after compression). */
    readonly size: number,
    /** The broker's limit in bytes. */
    readonly limit: number,
  ) {
    super(
      `message of ${size} bytes for ${topic} is over the broker's limit of ${limit} bytes (maxMessageSize); ` +
        'send less, raise maxMessageSize on the broker, or set producer.chunking: true',
    );
  }
}

/**
 * An exclusive producer (`createProducer(topic, { access: 'exclusive' })`)
 * was refused: another producer holds the topic. Nothing was opened; try
 * again later (the holder may go).
 */
export class ProducerBusyError extends SheafError {
  override name = 'ProducerBusyError';
  constructor(
    readonly topic: string,
    options?: { cause?: unknown },
  ) {
    super(`another producer holds ${topic} exclusively (or shared producers write to it); try again once it is gone`, options);
  }
}

/**
 * An exclusive producer lost the topic: its connection went, and another
 * exclusive producer took the topic over before it came back (Pulsar's topic
 * epoch moved on). Nothing it sends will be stored again; open a new one to
 * compete for the topic once more.
 */
export class ProducerFencedError extends SheafError {
  override name = 'ProducerFencedError';
  constructor(
    readonly topic: string,
    options?: { cause?: unknown },
  ) {
    super(`the exclusive producer for ${topic} was fenced: another producer took the topic over`, options);
  }
}

/** The broker did not confirm a message within the producer's `sendTimeoutSeconds`. It may or may not have been stored. */
export class SendTimeoutError extends SheafError {
  override name = 'SendTimeoutError';
  constructor(
    readonly topic: string,
    readonly timeoutMs: number,
  ) {
    super(
      `the broker did not confirm a message for ${topic} within ${timeoutMs} ms (producer.sendTimeoutSeconds); it may or may not be stored`,
    );
  }
}
