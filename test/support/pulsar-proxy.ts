/**
 * A TCP proxy in front of the broker that the test controls: it can cut every
 * connection at once, as a network failure or a broker crash would. It
 * rewrites LOOKUP answers to "proxy through the service URL", the way a
 * Pulsar proxy answers, so that clients keep connecting through it.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { CommandType } from '../../src/transport/pulsar/commands.js';
import { FrameReader, encodeSimpleFrame } from '../../src/transport/pulsar/frames.js';

export class PulsarTestProxy {
  private readonly sockets = new Set<Socket>();
  /** Each open connection's client side and broker side. */
  private readonly pairs = new Map<Socket, Socket>();
  private server: Server | null = null;
  /** Connections accepted so far: each cut makes clients come back with new ones. */
  accepted = 0;
  /** While true, new connections are closed at once (a broker that is down). */
  refuseNew = false;
  /** Client sides kept open after `freeze()`, swallowing what the client writes. */
  private readonly frozen = new Set<Socket>();

  constructor(
    private readonly brokerHost: string,
    private readonly brokerPort: number,
  ) {}

  async start(): Promise<string> {
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const address = this.server.address();
    if (typeof address !== 'object' || !address) throw new Error('proxy has no address');
    return `pulsar://127.0.0.1:${address.port}`;
  }

  /** Drops every open connection, both ways. */
  cutAll(): number {
    const n = this.sockets.size;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    return n / 2;
  }

  /**
   * A client process frozen (SIGSTOP, a long GC pause) as the broker sees
   * it: the broker's side of every connection closes, while the client's
   * stays open and what the client writes goes nowhere, so the client
   * notices nothing until `wake()`. New connections still pass.
   */
  freeze(): void {
    for (const [client, broker] of this.pairs) {
      this.frozen.add(client);
      broker.destroy();
    }
  }

  /** The frozen client wakes to find its connections closed: it reconnects, through the proxy. */
  wake(): void {
    for (const client of this.frozen) client.destroy();
    this.frozen.clear();
  }

  async stop(): Promise<void> {
    this.wake();
    this.cutAll();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }

  private accept(client: Socket): void {
    if (this.refuseNew) {
      client.destroy();
      return;
    }
    this.accepted += 1;
    const broker = connect({ host: this.brokerHost, port: this.brokerPort });
    this.sockets.add(client);
    this.sockets.add(broker);
    const fromBroker = new FrameReader();
    this.pairs.set(client, broker);
    client.on('data', (chunk) => {
      if (!this.frozen.has(client)) broker.write(chunk);
    });
    broker.on('data', (chunk: Buffer) => {
      for (const frame of fromBroker.push(chunk)) {
        if (frame.command.type === CommandType.LOOKUP_RESPONSE) {
          frame.command.lookupTopicResponse!.proxy_through_service_url = true;
          client.write(encodeSimpleFrame(frame.command));
        } else {
          client.write(frame.raw);
        }
      }
    });
    const close = (): void => {
      this.pairs.delete(client);
      this.sockets.delete(broker);
      if (this.frozen.has(client)) return; // the client side stays open until wake()
      client.destroy();
      broker.destroy();
      this.sockets.delete(client);
    };
    client.on('close', close);
    broker.on('close', close);
    client.on('error', close);
    broker.on('error', close);
  }
}
