/**
 * PulsarClient: the connections to a Pulsar cluster, shared by every producer
 * and consumer of one transport.
 *
 * Topic lookup goes through the service URL (the host that answered last, or
 * the next reachable one): LOOKUP answers
 * "connect to this broker" or "ask that broker" (a redirect, followed up to
 * `MAX_REDIRECTS` times). Connections are pooled by broker URL, so all
 * producers and consumers served by one broker share one socket.
 */
import type { Logger } from 'pino';
import { CommandType, LookupType, ServerError } from './commands.js';
import { Connection, type BrokerConnectionOptions } from './connection.js';
import { Backoff } from './backoff.js';
import { PulsarConnectionError, PulsarServerError, serverError } from './errors.js';
import { parseServiceUrl, type BrokerAddress } from './service-url.js';

const MAX_REDIRECTS = 20;

export interface PulsarClientOptions extends BrokerConnectionOptions {
  readonly serviceUrl: string;
  /**
   * Always open sockets to the service URL, naming the broker a lookup chose
   * (as through a Pulsar proxy). For one broker behind port mapping, whose
   * advertised address the client cannot reach.
   */
  readonly connectThroughServiceUrl?: boolean;
}

export class PulsarClient {
  private readonly serviceAddresses: BrokerAddress[];
  private readonly connections = new Map<string, Promise<Connection>>();
  /** The service URL host that answered last: lookups go there first. */
  private serviceAddressInUse = 0;
  private nextId = 1;
  private closed = false;
  private lastConnectFailure: string | null = null;

  constructor(private readonly options: PulsarClientOptions) {
    this.serviceAddresses = parseServiceUrl(options.serviceUrl);
  }

  get logger(): Logger {
    return this.options.logger;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Producer and consumer ids are unique per client, so they stay unique on any shared connection. */
  newId(): number {
    return this.nextId++;
  }

  /** How many partitions a topic has (0: not partitioned). */
  async partitions(topic: string): Promise<number> {
    const connection = await this.serviceConnection();
    const requestId = connection.newRequestId();
    const response = await connection.request(
      { type: CommandType.PARTITIONED_METADATA, partitionMetadata: { topic, request_id: requestId } },
      requestId,
    );
    const r = response.partitionMetadataResponse!;
    if (r.response === 1 /* Failed */) {
      throw serverError(ServerError[r.error ?? 0] ?? 'UnknownError', r.message ?? `partition metadata for ${topic} failed`);
    }
    return r.partitions ?? 0;
  }

  /** The connection to the broker that serves `topic`. */
  async lookup(topic: string): Promise<Connection> {
    let connection = await this.serviceConnection();
    let authoritative = false;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const requestId = connection.newRequestId();
      const response = await connection.request(
        { type: CommandType.LOOKUP, lookupTopic: { topic, request_id: requestId, authoritative } },
        requestId,
      );
      const r = response.lookupTopicResponse!;
      if (r.response === LookupType.Failed || r.response === undefined) {
        throw serverError(ServerError[r.error ?? 0] ?? 'UnknownError', r.message ?? `lookup of ${topic} failed`);
      }
      const target = this.pickUrl(r.brokerServiceUrl, r.brokerServiceUrlTls);
      const address = parseServiceUrl(target)[0]!;
      // Through a proxy, the socket goes to the service URL and the proxy forwards to the broker.
      const physical = r.proxy_through_service_url || this.options.connectThroughServiceUrl ? connection.physical : address;
      if (r.response === LookupType.Connect) return this.connection(address, physical);
      connection = await this.connection(address, physical);
      authoritative = r.authoritative ?? false;
    }
    throw new PulsarConnectionError(`lookup of ${topic} was redirected more than ${MAX_REDIRECTS} times`);
  }

  /**
   * Runs `attempt` (a first subscribe or producer creation) again while the
   * broker answers with an error worth retrying (`ServiceNotReady` while a
   * bundle is unloaded or moves, `MetadataError`, `TooManyRequests`, ...),
   * with backoff and a new lookup each time, as the Java client does, for at
   * most the operation timeout. Other errors, and a broker that cannot be
   * reached at all, fail at once: a start should fail fast when nothing
   * answers.
   */
  async whileBrokerBusy<T>(attempt: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.options.operationTimeoutMs;
    const backoff = new Backoff(100, 2000);
    for (;;) {
      try {
        return await attempt();
      } catch (error) {
        const waitMs = backoff.next();
        if (!(error instanceof PulsarServerError) || !error.retriable || this.closed || Date.now() + waitMs > deadline) throw error;
        this.logger.debug({ err: error.message }, 'the broker is not ready for this topic; looking it up again');
        await new Promise((resolve) => setTimeout(resolve, waitMs));
      }
    }
  }

  /** The last failure to open a connection, while none has opened since (null: the last attempt succeeded). */
  get connectionProblem(): string | null {
    return this.lastConnectFailure;
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = await Promise.allSettled(this.connections.values());
    this.connections.clear();
    for (const c of all) if (c.status === 'fulfilled') c.value.close();
  }

  /**
   * The broker URL a lookup answer points to. With TLS (a pulsar+ssl://
   * service URL) only the broker's TLS URL will do: a client that followed a
   * plaintext URL would send its token and tasks unencrypted, so an answer
   * without one (missing or empty) fails the lookup instead.
   */
  private pickUrl(plain: string | undefined, tls: string | undefined): string {
    if (this.serviceAddresses[0]!.tls) {
      if (!tls || !tls.startsWith('pulsar+ssl://')) {
        throw new PulsarConnectionError(
          "the lookup named no TLS URL for the broker (brokerServiceUrlTls); refusing to fall back to plaintext with TLS configured: enable the broker's TLS port",
        );
      }
      return tls;
    }
    const url = plain || tls;
    if (!url) throw new PulsarConnectionError('lookup response named no broker URL');
    return url;
  }

  /**
   * A connection to a host of the service URL: the one that answered last,
   * and if it cannot be reached, each other one in turn (as the Java client
   * does with a multi-host service URL), so one broker down does not stop a
   * start, a lookup or a reconnect. The client stays on the host that
   * answered, so a host that is down costs one failed connect per failover,
   * not one per lookup. A broker that answers with an error (a refused
   * token) ends the search: another host would say the same.
   */
  private async serviceConnection(): Promise<Connection> {
    const count = this.serviceAddresses.length;
    const first = this.serviceAddressInUse;
    const failures: string[] = [];
    for (let i = 0; i < count; i++) {
      const index = (first + i) % count;
      const address = this.serviceAddresses[index]!;
      try {
        const connection = await this.connection(address, address);
        if (index !== first) {
          this.serviceAddressInUse = index;
          this.lastConnectFailure = null;
          this.logger.warn({ unreachable: failures }, `service URL: using ${address.url}; the hosts before it could not be reached`);
        }
        return connection;
      } catch (error) {
        if (count === 1 || !(error instanceof PulsarConnectionError)) throw error;
        failures.push(error.message);
      }
    }
    const message = `no host of the service URL could be reached: ${failures.join('; ')}`;
    this.lastConnectFailure = message;
    throw new PulsarConnectionError(message);
  }

  private connection(address: BrokerAddress, physical: BrokerAddress): Promise<Connection> {
    if (this.closed) return Promise.reject(new PulsarConnectionError('the Pulsar client is closed'));
    const key = `${address.url}|${physical.url}`;
    const existing = this.connections.get(key);
    if (existing) return existing;
    const opening = Connection.open(address, physical, this.options).then(
      (connection) => {
        this.lastConnectFailure = null;
        connection.onClose(() => {
          if (this.connections.get(key) === opening) this.connections.delete(key);
        });
        if (this.closed) connection.close();
        return connection;
      },
      (error: unknown) => {
        this.connections.delete(key);
        this.lastConnectFailure = (error as Error)?.message ?? String(error);
        throw error;
      },
    );
    this.connections.set(key, opening);
    return opening;
  }
}
