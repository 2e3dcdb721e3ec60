import { SheafError } from '../../errors.js';

/** The broker answered a request with an error. `retriable` says whether a fresh lookup may help. */
export class PulsarServerError extends SheafError {
  override name = 'PulsarServerError';
  constructor(
    readonly serverError: string,
    message: string,
    readonly retriable: boolean,
  ) {
    super(`${serverError}: ${message}`);
  }
}

/**
 * The tenant or namespace of the transport does not exist on the broker (the
 * broker says `TopicNotFound: Namespace not found`). Create it first.
 */
export class NamespaceNotFoundError extends SheafError {
  override name = 'NamespaceNotFoundError';
  constructor(
    readonly tenant: string,
    readonly namespace: string,
    options?: { cause?: unknown },
  ) {
    super(
      `the namespace ${tenant}/${namespace} does not exist on the broker (or its tenant does not): ` +
        `create it with \`sheaf setup -c sheaf.yml\` or \`pulsar-admin namespaces create ${tenant}/${namespace}\`, ` +
        'or set pulsar.tenant and pulsar.namespace to ones that exist',
      options,
    );
  }
}

/** The connection to a broker was lost or could not be made. Always retriable. */
export class PulsarConnectionError extends SheafError {
  override name = 'PulsarConnectionError';
}

/** Server errors worth retrying after a backoff and a new lookup. */
const RETRIABLE = new Set([
  'ServiceNotReady',
  'TooManyRequests',
  'MetadataError',
  'PersistenceError',
  'ProducerBusy',
  'ConsumerBusy',
  'UnknownError',
]);

export function isRetriable(error: unknown): boolean {
  if (error instanceof PulsarConnectionError) return true;
  if (error instanceof PulsarServerError) return error.retriable;
  return false;
}

export function serverError(name: string, message: string): PulsarServerError {
  return new PulsarServerError(name, message, RETRIABLE.has(name));
}
