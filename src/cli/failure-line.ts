/**
 * One line saying what failed and how to fix it, for errors a command cannot
 * go on after (a worker that cannot start, a client that cannot connect).
 * The stack is for `--verbose`; users get the reason and the next step.
 */
import { NamespaceNotFoundError, PulsarConnectionError, PulsarServerError } from '../transport/pulsar/errors.js';
import { ProtocolError } from '../transport/pulsar/frames.js';
import { within } from '../util/within.js';

export function failureLine(error: unknown, verbose: boolean): string {
  if (verbose) return (error as Error)?.stack ?? String(error);
  const message = (error as Error)?.message ?? String(error);
  if (error instanceof NamespaceNotFoundError || error instanceof ProtocolError) return message;
  if (error instanceof PulsarConnectionError) return `${message}; is the broker running, and is pulsar.brokerServiceUrl right?`;
  if (error instanceof PulsarServerError && (error.serverError === 'AuthenticationError' || error.serverError === 'AuthorizationError')) {
    return `${message}; check pulsar.authentication (token or tokenFile) and the role's permissions on the namespace`;
  }
  return message;
}

/** Runs `close`, but gives up after `ms`: an exit must not wait on a broker that is gone. */
export async function closeWithin(close: () => Promise<void>, ms: number): Promise<void> {
  await within(close(), ms);
}
