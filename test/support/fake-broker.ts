/**
 * A scripted stand-in for a Pulsar broker, speaking the real framing: for
 * unit tests of what a standalone broker cannot easily be made to do
 * (redirects, authentication challenges, silence, TLS with a test CA).
 */
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { CommandType, type BaseCommand } from '../../src/transport/pulsar/commands.js';
import { FrameReader, encodeSimpleFrame } from '../../src/transport/pulsar/frames.js';

export type Reply = (command: BaseCommand) => void;
export type Script = (command: BaseCommand, reply: Reply, socket: Socket) => void;

export class FakeBroker {
  readonly received: BaseCommand[] = [];
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(
    private readonly script: Script,
    private readonly tls?: { key: string; cert: string },
  ) {}

  /** The broker side of every open connection (tests pause them to stop reading). */
  get openSockets(): Socket[] {
    return [...this.sockets];
  }

  get url(): string {
    return `${this.tls ? 'pulsar+ssl' : 'pulsar'}://localhost:${this.port}`;
  }

  async start(): Promise<this> {
    const onSocket = (socket: Socket): void => {
      this.sockets.add(socket);
      const reader = new FrameReader();
      const reply: Reply = (command) => socket.write(encodeSimpleFrame(command));
      socket.on('data', (chunk: Buffer) => {
        for (const frame of reader.push(chunk)) {
          this.received.push(frame.command);
          this.script(frame.command, reply, socket);
        }
      });
      socket.on('error', () => undefined);
      socket.on('close', () => this.sockets.delete(socket));
    };
    this.server = this.tls ? createTlsServer(this.tls, onSocket) : createTcpServer(onSocket);
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}

/** Answers CONNECT with CONNECTED; everything else is left to `rest`. */
export function connectThen(rest: Script = () => undefined): Script {
  return (command, reply, socket) => {
    if (command.type === CommandType.CONNECT) {
      reply({ type: CommandType.CONNECTED, connected: { server_version: 'fake', protocol_version: 19 } });
      return;
    }
    rest(command, reply, socket);
  };
}
