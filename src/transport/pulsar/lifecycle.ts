/**
 * The lifecycle of a partition producer or consumer, as a union of states
 * with guarded transitions (as `SheafWorker`'s):
 *
 *   connecting ─► ready ◄─► reconnecting
 *        └──────────┴───────────┴──► closing ─► closed
 *
 * `closing` and `closed` are final: a subscribe or reconnect that finishes
 * after `close()` cannot make the endpoint ready again (its `to('ready')` is
 * refused, and the caller undoes what it created on the broker).
 */
import type { Connection } from './connection.js';

export type EndpointState =
  | { readonly kind: 'connecting' }
  | { readonly kind: 'ready'; readonly connection: Connection }
  | { readonly kind: 'reconnecting' }
  | { readonly kind: 'closing' }
  | { readonly kind: 'closed' };

type Kind = EndpointState['kind'];

const ALLOWED: Record<Kind, readonly Kind[]> = {
  connecting: ['ready', 'reconnecting', 'closing'],
  ready: ['reconnecting', 'closing'],
  reconnecting: ['ready', 'closing'],
  closing: ['closed'],
  closed: [],
};

export class EndpointLifecycle {
  private current: EndpointState = { kind: 'connecting' };

  get state(): EndpointState {
    return this.current;
  }

  /** Moves to `next` if the lifecycle allows it; says whether it did. */
  to(next: EndpointState): boolean {
    if (!ALLOWED[this.current.kind].includes(next.kind)) return false;
    this.current = next;
    return true;
  }

  /** The connection while ready, else null. */
  get connection(): Connection | null {
    return this.current.kind === 'ready' ? this.current.connection : null;
  }

  get isClosingOrClosed(): boolean {
    return this.current.kind === 'closing' || this.current.kind === 'closed';
  }
}
