/**
 * A small in-process broker for one topic, on the real framing, built on
 * `FakeBroker`: lookups answer "here", subscriptions get entries from a queue
 * as permits allow, charging them as a real broker does (every message of an
 * entry, going below zero when a batch overshoots), and acks, redeliveries
 * and sends are recorded. For client behaviour a standalone broker cannot be
 * made to show on demand: exact permit counts, hostile bytes, withheld
 * receipts, a small maxMessageSize.
 */
import type { Socket } from 'node:net';
import { CommandType, has, num, type BaseCommand, type MessageIdData, type MessageMetadata } from '../../src/transport/pulsar/commands.js';
import { decodeFrame, encodePayloadFrame } from '../../src/transport/pulsar/frames.js';
import { FakeBroker } from './fake-broker.js';

export interface SimulatedEntry {
  readonly metadata: MessageMetadata;
  readonly payload: Uint8Array;
  /** Messages the broker charges for it (num_messages_in_batch). */
  readonly count: number;
  /** Replaces the encoded frame (for corrupt bytes). */
  readonly mutate?: (frame: Buffer) => Buffer;
}

export interface SimulatedOptions {
  readonly maxMessageSize?: number;
  /** Answer SEND with a receipt (default true). */
  readonly receipts?: boolean;
  /** Partitions of the topic (default 0: not partitioned). */
  readonly partitions?: number;
  /** Refuse PRODUCER for topics that match. */
  readonly refuseProducer?: (topic: string) => boolean;
  /** Answer the first PRODUCER commands with these server errors, one each, in order (taken from the array). */
  readonly producerErrors?: number[];
  /** Hold SUBSCRIBE's answer until this resolves. */
  readonly holdSubscribe?: () => Promise<void>;
}

export class SimulatedBroker {
  readonly acks: Array<{ id: MessageIdData; validationError?: number }> = [];
  readonly redelivered: MessageIdData[] = [];
  readonly sends: BaseCommand[] = [];
  readonly closedProducers: number[] = [];
  readonly subscribes: BaseCommand[] = [];
  /** The broker's count of the consumer's permits. */
  permits = 0;
  private queue: Array<SimulatedEntry & { entryId: number }> = [];
  private nextEntry = 0;
  private consumer: { id: number; socket: Socket } | null = null;
  readonly fake: FakeBroker;

  constructor(private readonly options: SimulatedOptions = {}) {
    this.fake = new FakeBroker((command, reply, socket) => this.handle(command, reply, socket));
  }

  get url(): string {
    return this.fake.url;
  }

  async start(): Promise<this> {
    await this.fake.start();
    return this;
  }

  stop(): Promise<void> {
    return this.fake.stop();
  }

  /** Queues entries for the subscription and delivers what permits allow. */
  publish(...entries: SimulatedEntry[]): void {
    for (const entry of entries) this.queue.push({ ...entry, entryId: this.nextEntry++ });
    this.dispatch();
  }

  get queued(): number {
    return this.queue.length;
  }

  private handle(command: BaseCommand, reply: (c: BaseCommand) => void, socket: Socket): void {
    switch (command.type) {
      case CommandType.CONNECT:
        reply({
          type: CommandType.CONNECTED,
          connected: {
            server_version: 'simulated',
            protocol_version: 19,
            ...(this.options.maxMessageSize ? { max_message_size: this.options.maxMessageSize } : {}),
          },
        });
        return;
      case CommandType.PARTITIONED_METADATA:
        reply({
          type: CommandType.PARTITIONED_METADATA_RESPONSE,
          partitionMetadataResponse: { request_id: command.partitionMetadata!.request_id, partitions: this.options.partitions ?? 0 },
        });
        return;
      case CommandType.LOOKUP:
        reply({
          type: CommandType.LOOKUP_RESPONSE,
          lookupTopicResponse: {
            request_id: command.lookupTopic!.request_id,
            response: 1,
            brokerServiceUrl: this.url,
            authoritative: true,
          },
        });
        return;
      case CommandType.SUBSCRIBE: {
        this.subscribes.push(command);
        const answer = (): void => {
          this.consumer = { id: num(command.subscribe!.consumer_id), socket };
          this.permits = 0;
          reply({ type: CommandType.SUCCESS, success: { request_id: command.subscribe!.request_id } });
        };
        if (this.options.holdSubscribe) void this.options.holdSubscribe().then(answer);
        else answer();
        return;
      }
      case CommandType.PRODUCER:
        if (this.options.producerErrors?.length) {
          const error = this.options.producerErrors.shift()!;
          reply({ type: CommandType.ERROR, error: { request_id: command.producer!.request_id, error, message: 'simulated' } });
          return;
        }
        if (this.options.refuseProducer?.(command.producer!.topic)) {
          reply({ type: CommandType.ERROR, error: { request_id: command.producer!.request_id, error: 4, message: 'refused' } });
          return;
        }
        reply({ type: CommandType.PRODUCER_SUCCESS, producer_success: { request_id: command.producer!.request_id, producer_name: 'sim' } });
        return;
      case CommandType.SEND:
        this.sends.push(command);
        if (this.options.receipts === false) return;
        reply({
          type: CommandType.SEND_RECEIPT,
          send_receipt: {
            producer_id: command.send!.producer_id,
            sequence_id: command.send!.sequence_id,
            message_id: { ledgerId: 9, entryId: this.sends.length },
          },
        });
        return;
      case CommandType.FLOW:
        this.permits += command.flow!.messagePermits;
        this.dispatch();
        return;
      case CommandType.ACK:
        for (const id of command.ack!.message_id) {
          this.acks.push({ id, ...(has(command.ack!, 'validation_error') ? { validationError: command.ack!.validation_error! } : {}) });
        }
        return;
      case CommandType.REDELIVER_UNACKNOWLEDGED_MESSAGES:
        this.redelivered.push(...command.redeliverUnacknowledgedMessages!.message_ids);
        return;
      case CommandType.CLOSE_PRODUCER:
        this.closedProducers.push(num(command.close_producer!.producer_id));
        reply({ type: CommandType.SUCCESS, success: { request_id: command.close_producer!.request_id } });
        return;
      case CommandType.CLOSE_CONSUMER:
        this.consumer = null;
        reply({ type: CommandType.SUCCESS, success: { request_id: command.close_consumer!.request_id } });
        return;
      default:
    }
  }

  /** Like a broker: an entry goes out while permits are above zero, and costs all its messages. */
  private dispatch(): void {
    const consumer = this.consumer;
    if (!consumer) return;
    while (this.permits > 0 && this.queue.length > 0) {
      const entry = this.queue.shift()!;
      const encoded = encodePayloadFrame(
        { type: CommandType.MESSAGE, message: { consumer_id: consumer.id, message_id: { ledgerId: 1, entryId: entry.entryId } } },
        entry.metadata,
        entry.payload,
      );
      const frame = entry.mutate ? entry.mutate(encoded) : encoded;
      this.permits -= entry.mutate ? storedCount(frame) : entry.count;
      consumer.socket.write(frame);
    }
  }
}

/** What a broker charges for an entry it stores as these bytes: the batch size its metadata gives, else 1. */
function storedCount(frame: Buffer): number {
  try {
    const metadata = decodeFrame(frame).metadata;
    return metadata && has(metadata, 'num_messages_in_batch') ? Math.max(1, metadata.num_messages_in_batch ?? 1) : 1;
  } catch {
    return 1;
  }
}
