/**
 * One TCP (or TLS) connection to one broker.
 *
 * It performs the CONNECT handshake (with token authentication when
 * configured), correlates requests with responses by request id, answers
 * PING, sends its own PING when the line is quiet and closes the connection
 * when the broker stays silent past two intervals. Commands the broker sends
 * on its own (MESSAGE, SEND_RECEIPT, CLOSE_PRODUCER, ...) go to the handler
 * registered for that producer or consumer id.
 *
 * A connection never reconnects itself: when it closes, every pending request
 * fails with `PulsarConnectionError` and every registered handler hears
 * `onConnectionClosed`; producers and consumers then reconnect through the
 * client, which looks their topic up again.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import type { Logger } from 'pino';
import { CommandType, ServerError, num, type BaseCommand, type MessageMetadata } from './commands.js';
import { PulsarConnectionError, serverError } from './errors.js';
import { FrameReader, encodePayloadFrame, encodeSimpleFrame, type DecodedFrame } from './frames.js';
import type { BrokerAddress } from './service-url.js';

/** The protocol version Sheaf speaks: Key_Shared, redelivery counts and CONNECTED's max_message_size are all older. */
export const PROTOCOL_VERSION = 19;
export const CLIENT_VERSION = 'sheaf-0.1.0';

export interface BrokerConnectionOptions {
  readonly logger: Logger;
  /** A token for `auth_method_name: token`, or a function that returns the current one. */
  readonly token?: string | (() => string | Promise<string>);
  readonly tls?: TlsOptions;
  readonly connectTimeoutMs: number;
  readonly operationTimeoutMs: number;
  readonly keepAliveIntervalMs: number;
}

/** TLS settings for `pulsar+ssl://`: trusted CAs, a client certificate, whether to check the broker's. */
export type TlsOptions = Pick<TlsConnectionOptions, 'ca' | 'cert' | 'key' | 'rejectUnauthorized' | 'servername'>;

/** What a producer or consumer registers to hear about its own commands. */
export interface ConnectionHandler {
  onFrame(frame: DecodedFrame): void;
  onConnectionClosed(error: Error): void;
  /** The socket's buffer drained after `congested` was true. */
  onWritable?(): void;
}

interface PendingRequest {
  resolve(command: BaseCommand): void;
  reject(error: Error): void;
  /** The request's own timeout; the handshake's (request 0) is bounded by the connect deadline instead. */
  timer?: ReturnType<typeof setTimeout>;
}

export class Connection {
  private socket: Socket | null = null;
  private readonly reader = new FrameReader();
  private readonly pending = new Map<number, PendingRequest>();
  private readonly producers = new Map<number, ConnectionHandler>();
  private readonly consumers = new Map<number, ConnectionHandler>();
  private readonly closeListeners = new Set<(error: Error) => void>();
  private nextRequestId = 1;
  private lastReceivedAt = Date.now();
  private keepAlive: ReturnType<typeof setInterval> | null = null;
  private closedWith: Error | null = null;
  /** The token last sent, to name its role and expiry if the broker refuses it (never its text). */
  private lastToken: string | undefined;
  /** True from the first write of a turn until the end of it (the socket is corked meanwhile). */
  private corked = false;
  maxMessageSize = 5 * 1024 * 1024;
  serverVersion = '';

  private constructor(
    readonly address: BrokerAddress,
    /** Where the socket goes: the broker itself, or a proxy in front of it. */
    readonly physical: BrokerAddress,
    private readonly options: BrokerConnectionOptions,
  ) {}

  static async open(address: BrokerAddress, physical: BrokerAddress, options: BrokerConnectionOptions): Promise<Connection> {
    const connection = new Connection(address, physical, options);
    await connection.handshake(address !== physical ? address.url : undefined);
    return connection;
  }

  get isOpen(): boolean {
    return this.closedWith === null;
  }

  /**
   * True while the socket's buffer is over its high-water mark: producers
   * hold further sends until `onWritable` (back-pressure instead of an
   * unbounded buffer in the socket).
   */
  get congested(): boolean {
    return this.socket?.writableNeedDrain ?? false;
  }

  newRequestId(): number {
    return this.nextRequestId++;
  }

  registerProducer(id: number, handler: ConnectionHandler): void {
    this.producers.set(id, handler);
  }

  unregisterProducer(id: number): void {
    this.producers.delete(id);
  }

  registerConsumer(id: number, handler: ConnectionHandler): void {
    this.consumers.set(id, handler);
  }

  unregisterConsumer(id: number): void {
    this.consumers.delete(id);
  }

  onClose(listener: (error: Error) => void): void {
    this.closeListeners.add(listener);
  }

  /** Sends a command that expects a response carrying `request_id`. */
  request(command: BaseCommand, requestId: number): Promise<BaseCommand> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise<BaseCommand>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(
          new PulsarConnectionError(
            `${typeName(command.type)} request ${requestId} to ${this.address.url} timed out after ${this.options.operationTimeoutMs} ms`,
          ),
        );
      }, this.options.operationTimeoutMs);
      this.pending.set(requestId, { resolve, reject, timer });
      this.write(encodeSimpleFrame(command));
    });
  }

  /** Sends a command with no response (FLOW, ACK, REDELIVER, PONG). */
  send(command: BaseCommand): void {
    this.write(encodeSimpleFrame(command));
  }

  sendPayload(command: BaseCommand, metadata: MessageMetadata, payload: Uint8Array): void {
    this.write(encodePayloadFrame(command, metadata, payload));
  }

  close(reason = 'closed by the client'): void {
    this.teardown(new PulsarConnectionError(`connection to ${this.address.url} ${reason}`));
  }

  private write(frame: Buffer): void {
    if (this.closedWith) throw this.closedWith;
    const socket = this.socket!;
    if (!this.corked) {
      // The frames of one turn (a flush of batch entries, acks, permits) leave in one write call, not one each.
      this.corked = true;
      socket.cork();
      process.nextTick(() => {
        this.corked = false;
        socket.uncork();
      });
    }
    socket.write(frame);
  }

  /**
   * TCP (or TLS) connect, then CONNECT/CONNECTED, under one deadline
   * (`connectTimeoutMs`): a host that never answers a SYN fails in time too.
   */
  private async handshake(proxyTo: string | undefined): Promise<void> {
    const { host, port, tls } = this.physical;
    const socket = tls
      ? tlsConnect({ host, port, servername: isIp(host) ? undefined : host, ...this.options.tls })
      : netConnect({ host, port });
    socket.setNoDelay(true);
    this.socket = socket;
    const connected = new Promise<BaseCommand>((resolve, reject) => {
      this.pending.set(0, { resolve, reject });
    });
    // If the socket fails first, `connected` is rejected by teardown and awaited by no one.
    connected.catch(() => undefined);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.onDrain());
    socket.on('error', (error) =>
      this.teardown(new PulsarConnectionError(`connection to ${this.address.url} failed: ${error.message}`, { cause: error })),
    );
    socket.on('close', () => this.teardown(new PulsarConnectionError(`connection to ${this.address.url} closed`)));
    let deadline: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      deadline = setTimeout(
        () => reject(new PulsarConnectionError(`connecting to ${this.address.url} timed out after ${this.options.connectTimeoutMs} ms`)),
        this.options.connectTimeoutMs,
      );
    });
    try {
      const response = await Promise.race([this.exchangeConnect(socket, tls, proxyTo, connected), timedOut]);
      this.serverVersion = response.connected?.server_version ?? '';
      if (response.connected?.max_message_size) {
        this.maxMessageSize = response.connected.max_message_size;
        this.reader.setMaxFrameSize(this.maxMessageSize);
      }
    } catch (error) {
      this.teardown(error as Error);
      throw error;
    } finally {
      clearTimeout(deadline);
    }
    this.keepAlive = setInterval(() => this.checkAlive(), this.options.keepAliveIntervalMs);
    this.keepAlive.unref();
  }

  private async exchangeConnect(
    socket: Socket,
    tls: boolean,
    proxyTo: string | undefined,
    connected: Promise<BaseCommand>,
  ): Promise<BaseCommand> {
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => reject(new PulsarConnectionError(`cannot connect to ${this.address.url}: ${e.message}`, { cause: e }));
      socket.once(tls ? 'secureConnect' : 'connect', () => {
        socket.off('error', onError);
        resolve();
      });
      socket.once('error', onError);
    });
    const auth = await this.authData();
    const connect: BaseCommand['connect'] = {
      client_version: CLIENT_VERSION,
      protocol_version: PROTOCOL_VERSION,
      feature_flags: { supports_auth_refresh: true },
      ...(auth ? { auth_method_name: 'token', auth_data: auth } : {}),
      ...(proxyTo ? { proxy_to_broker_url: proxyTo } : {}),
    };
    this.write(encodeSimpleFrame({ type: CommandType.CONNECT, connect }));
    return connected;
  }

  private onDrain(): void {
    for (const handler of [...this.producers.values()]) this.guard(() => handler.onWritable?.());
  }

  /**
   * Runs a handler's code for one frame. Nothing a broker sends may throw out
   * of the socket's data handler (it would crash the process): a handler
   * that throws anyway is logged, and the connection carries on.
   */
  private guard(run: () => void): void {
    try {
      run();
    } catch (error) {
      this.options.logger.error({ err: error, broker: this.address.url }, 'a producer or consumer failed handling a frame from the broker');
    }
  }

  private async authData(): Promise<Uint8Array | undefined> {
    const { token } = this.options;
    if (token === undefined) return undefined;
    const value = typeof token === 'function' ? await token() : token;
    this.lastToken = value;
    return Buffer.from(value, 'utf8');
  }

  private checkAlive(): void {
    if (Date.now() - this.lastReceivedAt > 2 * this.options.keepAliveIntervalMs) {
      this.teardown(new PulsarConnectionError(`broker ${this.address.url} sent nothing for ${2 * this.options.keepAliveIntervalMs} ms`));
      this.socket?.destroy();
      return;
    }
    if (!this.closedWith) this.send({ type: CommandType.PING, ping: {} });
  }

  private onData(chunk: Buffer): void {
    this.lastReceivedAt = Date.now();
    let frames: DecodedFrame[];
    try {
      frames = this.reader.push(chunk);
    } catch (error) {
      this.options.logger.error({ err: error, broker: this.address.url }, 'unreadable data from the broker; closing the connection');
      this.teardown(error as Error);
      this.socket?.destroy();
      return;
    }
    for (const frame of frames) this.guard(() => this.dispatch(frame));
  }

  private dispatch(frame: DecodedFrame): void {
    const c = frame.command;
    switch (c.type) {
      case CommandType.CONNECTED:
        this.settle(0, c);
        return;
      case CommandType.PING:
        this.send({ type: CommandType.PONG, pong: {} });
        return;
      case CommandType.PONG:
        return;
      case CommandType.AUTH_CHALLENGE:
        void this.answerChallenge();
        return;
      case CommandType.SUCCESS:
        return this.settle(num(c.success!.request_id), c);
      case CommandType.PRODUCER_SUCCESS:
        if (c.producer_success!.producer_ready === false) return; // a second one follows when ready
        return this.settle(num(c.producer_success!.request_id), c);
      case CommandType.LOOKUP_RESPONSE:
        return this.settle(num(c.lookupTopicResponse!.request_id), c);
      case CommandType.PARTITIONED_METADATA_RESPONSE:
        return this.settle(num(c.partitionMetadataResponse!.request_id), c);
      case CommandType.ERROR: {
        // Request id 0 is the handshake: an ERROR for it is a refused CONNECT.
        const e = c.error!;
        const requestId = num(e.request_id);
        const name = ServerError[e.error] ?? String(e.error);
        // During the handshake the broker answers a refused CONNECT on request id -1, then closes: it is the handshake's error.
        if (this.pending.has(0)) {
          const message = name === 'AuthenticationError' ? describeRefusedToken(this.lastToken, e.message) : e.message;
          return this.fail(0, serverError(name, message));
        }
        if (this.pending.has(requestId)) return this.fail(requestId, serverError(name, e.message));
        this.options.logger.warn({ error: ServerError[e.error], message: e.message }, 'broker error for no pending request');
        return;
      }
      case CommandType.SEND_RECEIPT:
        return this.toProducer(num(c.send_receipt!.producer_id), frame);
      case CommandType.SEND_ERROR:
        return this.toProducer(num(c.send_error!.producer_id), frame);
      case CommandType.CLOSE_PRODUCER:
        return this.toProducer(num(c.close_producer!.producer_id), frame);
      case CommandType.MESSAGE:
        return this.toConsumer(num(c.message!.consumer_id), frame);
      case CommandType.CLOSE_CONSUMER:
        return this.toConsumer(num(c.close_consumer!.consumer_id), frame);
      case CommandType.REACHED_END_OF_TOPIC:
        return this.toConsumer(num(c.reachedEndOfTopic!.consumer_id), frame);
      case CommandType.ACTIVE_CONSUMER_CHANGE:
        return;
      default:
        this.options.logger.debug({ type: c.type, broker: this.address.url }, 'ignoring a command Sheaf does not use');
    }
  }

  private async answerChallenge(): Promise<void> {
    try {
      const auth = await this.authData();
      this.send({
        type: CommandType.AUTH_RESPONSE,
        authResponse: {
          client_version: CLIENT_VERSION,
          protocol_version: PROTOCOL_VERSION,
          response: { auth_method_name: 'token', auth_data: auth ?? new Uint8Array() },
        },
      });
    } catch (error) {
      this.options.logger.error({ err: error }, "could not answer the broker's authentication challenge");
    }
  }

  private toProducer(id: number, frame: DecodedFrame): void {
    this.producers.get(id)?.onFrame(frame);
  }

  private toConsumer(id: number, frame: DecodedFrame): void {
    this.consumers.get(id)?.onFrame(frame);
  }

  private settle(requestId: number, command: BaseCommand): void {
    const pending = this.pending.get(requestId);
    if (!pending) return;
    this.pending.delete(requestId);
    clearTimeout(pending.timer);
    pending.resolve(command);
  }

  private fail(requestId: number, error: Error): void {
    const pending = this.pending.get(requestId);
    if (!pending) return;
    this.pending.delete(requestId);
    clearTimeout(pending.timer);
    pending.reject(error);
  }

  private teardown(error: Error): void {
    if (this.closedWith) return;
    this.closedWith = error;
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.socket?.destroy();
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      this.pending.delete(id);
      pending.reject(error);
    }
    for (const handler of [...this.producers.values(), ...this.consumers.values()]) handler.onConnectionClosed(error);
    this.producers.clear();
    this.consumers.clear();
    for (const listener of this.closeListeners) listener(error);
  }
}

/**
 * Why the broker refused a token, named by what the token says of itself (its
 * role and expiry, read from a JWT's claims; never the token's text).
 */
function describeRefusedToken(token: string | undefined, brokerMessage: string): string {
  if (token === undefined) return `authentication failed: no token was sent (${brokerMessage}); set pulsar.authentication`;
  let claims: { sub?: unknown; exp?: unknown } = {};
  try {
    const payload = token.split('.')[1];
    if (payload) claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as typeof claims;
  } catch {
    // not a JWT: nothing more to say than the broker did
  }
  const role = typeof claims.sub === 'string' ? ` for role ${JSON.stringify(claims.sub.slice(0, 100))}` : '';
  if (typeof claims.exp === 'number' && claims.exp * 1000 <= Date.now()) {
    return `authentication failed${role}: token expired at ${new Date(claims.exp * 1000).toISOString()}`;
  }
  return `authentication failed${role}: ${brokerMessage}`;
}

function typeName(type: number): string {
  return Object.entries(CommandType).find(([, v]) => v === type)?.[0] ?? String(type);
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}
