import type { MethodDefinition } from '../service/registry.js';
import type { ReceivedMessage } from '../transport/transport.js';
import type { TaskEnvelope } from '../wire/envelopes.js';

/** A task message that was decoded and checked, on its way to execution. */
export interface ReceivedTask {
  readonly message: ReceivedMessage;
  readonly envelope: TaskEnvelope;
  readonly method: MethodDefinition;
  /** Arguments after `@Params` checks and class-transformer. */
  readonly args: unknown[];
  /** The task's entry in its batch's input map (batch methods only; built at receive time so a bad input fails alone). */
  readonly input: unknown;
  /** The message's size: what `maxBytes` counts. */
  readonly bytes: number;
  readonly batchKey: string | null;
  /** When the worker received it (clock milliseconds): how long it waited in its aggregate. */
  readonly receivedAt: number;
}

/** How one execution ended for one task. */
export type ExecutionOutcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };
