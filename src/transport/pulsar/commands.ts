/**
 * Pulsar protocol commands: the `.proto` subset loaded with protobufjs, and
 * TypeScript shapes for the fields Sheaf reads and writes. Names follow the
 * `.proto` file exactly (`keepCase`), so the two can be read side by side.
 */
import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';

const root = protobuf.parse(readFileSync(new URL('./proto/pulsar-api.proto', import.meta.url), 'utf8'), { keepCase: true }).root;

const BaseCommandType = root.lookupType('sheaf.pulsar.BaseCommand');
const MessageMetadataType = root.lookupType('sheaf.pulsar.MessageMetadata');
const SingleMessageMetadataType = root.lookupType('sheaf.pulsar.SingleMessageMetadata');

/** Command types, as numbered by the protocol. */
export const CommandType = {
  CONNECT: 2,
  CONNECTED: 3,
  SUBSCRIBE: 4,
  PRODUCER: 5,
  SEND: 6,
  SEND_RECEIPT: 7,
  SEND_ERROR: 8,
  MESSAGE: 9,
  ACK: 10,
  FLOW: 11,
  UNSUBSCRIBE: 12,
  SUCCESS: 13,
  ERROR: 14,
  CLOSE_PRODUCER: 15,
  CLOSE_CONSUMER: 16,
  PRODUCER_SUCCESS: 17,
  PING: 18,
  PONG: 19,
  REDELIVER_UNACKNOWLEDGED_MESSAGES: 20,
  PARTITIONED_METADATA: 21,
  PARTITIONED_METADATA_RESPONSE: 22,
  LOOKUP: 23,
  LOOKUP_RESPONSE: 24,
  REACHED_END_OF_TOPIC: 27,
  ACTIVE_CONSUMER_CHANGE: 31,
  AUTH_CHALLENGE: 36,
  AUTH_RESPONSE: 37,
} as const;
export type CommandTypeNumber = (typeof CommandType)[keyof typeof CommandType];

export const ServerError: Record<number, string> = Object.fromEntries(
  Object.entries(root.lookupEnum('sheaf.pulsar.ServerError').values).map(([name, value]) => [value, name]),
);

export const SubType = { Exclusive: 0, Shared: 1, Failover: 2, Key_Shared: 3 } as const;
export const LookupType = { Redirect: 0, Connect: 1, Failed: 2 } as const;
export const CompressionType = { NONE: 0, LZ4: 1, ZLIB: 2, ZSTD: 3, SNAPPY: 4 } as const;
/** CommandAck.ValidationError: why a client discarded a message before the application saw it. */
export const ValidationError = {
  UncompressedSizeCorruption: 0,
  DecompressionError: 1,
  ChecksumMismatch: 2,
  BatchDeSerializeError: 3,
  DecryptionError: 4,
} as const;

/** uint64 fields decode as `Long` objects; our ids and ledgers stay far below 2^53. */
export type Uint64 = number | { toNumber(): number };
export const num = (value: Uint64 | undefined | null): number =>
  value === undefined || value === null ? 0 : typeof value === 'number' ? value : value.toNumber();

export interface KeyValue {
  key: string;
  value: string;
}

export interface MessageIdData {
  ledgerId: Uint64;
  entryId: Uint64;
  partition?: number;
  batch_index?: number;
  /** Batch-index acks: 64-bit words of a bit set, bit i set = message i not acked yet. */
  ack_set?: Uint64[];
  batch_size?: number;
  first_chunk_message_id?: MessageIdData;
}

export interface MessageMetadata {
  producer_name: string;
  sequence_id: Uint64;
  publish_time: Uint64;
  properties?: KeyValue[];
  partition_key?: string;
  compression?: number;
  uncompressed_size?: number;
  num_messages_in_batch?: number;
  ordering_key?: Uint8Array;
  deliver_at_time?: Uint64;
  highest_sequence_id?: Uint64;
  event_time?: Uint64;
  encryption_keys?: Array<{ key: string; value: Uint8Array }>;
  encryption_algo?: string;
  partition_key_b64_encoded?: boolean;
  marker_type?: number;
  null_value?: boolean;
  uuid?: string;
  num_chunks_from_msg?: number;
  total_chunk_msg_size?: number;
  chunk_id?: number;
  null_partition_key?: boolean;
}

export interface SingleMessageMetadata {
  properties?: KeyValue[];
  partition_key?: string;
  payload_size: number;
  compacted_out?: boolean;
  ordering_key?: Uint8Array;
  sequence_id?: Uint64;
  event_time?: Uint64;
  partition_key_b64_encoded?: boolean;
  null_value?: boolean;
}

export interface ServerErrorFields {
  error?: number;
  message?: string;
}

/** A decoded or to-be-encoded BaseCommand. Only the field matching `type` is set. */
export interface BaseCommand {
  type: number;
  connect?: {
    client_version: string;
    protocol_version?: number;
    auth_method_name?: string;
    auth_data?: Uint8Array;
    proxy_to_broker_url?: string;
    feature_flags?: Record<string, boolean>;
  };
  connected?: { server_version: string; protocol_version?: number; max_message_size?: number };
  subscribe?: {
    topic: string;
    subscription: string;
    subType: number;
    consumer_id: Uint64;
    request_id: Uint64;
    consumer_name?: string;
    durable?: boolean;
    startMessageId?: MessageIdData;
    initialPosition?: number;
    force_topic_creation?: boolean;
    keySharedMeta?: { keySharedMode: number; allowOutOfOrderDelivery?: boolean };
  };
  producer?: {
    topic: string;
    producer_id: Uint64;
    request_id: Uint64;
    producer_name?: string;
    epoch?: Uint64;
    user_provided_producer_name?: boolean;
    /** ProducerAccessMode: 0 Shared, 1 Exclusive. */
    producer_access_mode?: number;
    topic_epoch?: Uint64;
  };
  send?: { producer_id: Uint64; sequence_id: Uint64; num_messages?: number; highest_sequence_id?: Uint64 };
  send_receipt?: { producer_id: Uint64; sequence_id: Uint64; message_id?: MessageIdData; highest_sequence_id?: Uint64 };
  send_error?: { producer_id: Uint64; sequence_id: Uint64; error: number; message: string };
  message?: { consumer_id: Uint64; message_id: MessageIdData; redelivery_count?: number; ack_set?: Uint64[] };
  ack?: { consumer_id: Uint64; ack_type: number; message_id: MessageIdData[]; validation_error?: number };
  flow?: { consumer_id: Uint64; messagePermits: number };
  unsubscribe?: { consumer_id: Uint64; request_id: Uint64 };
  success?: { request_id: Uint64 };
  error?: { request_id: Uint64; error: number; message: string };
  close_producer?: { producer_id: Uint64; request_id: Uint64 };
  close_consumer?: { consumer_id: Uint64; request_id: Uint64 };
  producer_success?: {
    request_id: Uint64;
    producer_name: string;
    last_sequence_id?: Uint64;
    topic_epoch?: Uint64;
    producer_ready?: boolean;
  };
  ping?: Record<string, never>;
  pong?: Record<string, never>;
  redeliverUnacknowledgedMessages?: { consumer_id: Uint64; message_ids: MessageIdData[] };
  partitionMetadata?: { topic: string; request_id: Uint64 };
  partitionMetadataResponse?: { partitions?: number; request_id: Uint64; response?: number } & ServerErrorFields;
  lookupTopic?: { topic: string; request_id: Uint64; authoritative?: boolean };
  lookupTopicResponse?: {
    brokerServiceUrl?: string;
    brokerServiceUrlTls?: string;
    response?: number;
    request_id: Uint64;
    authoritative?: boolean;
    proxy_through_service_url?: boolean;
  } & ServerErrorFields;
  reachedEndOfTopic?: { consumer_id: Uint64 };
  active_consumer_change?: { consumer_id: Uint64; is_active?: boolean };
  authChallenge?: { server_version?: string; challenge?: { auth_method_name?: string; auth_data?: Uint8Array } };
  authResponse?: { client_version?: string; response?: { auth_method_name?: string; auth_data?: Uint8Array }; protocol_version?: number };
}

export function encodeBaseCommand(command: BaseCommand): Uint8Array {
  return BaseCommandType.encode(BaseCommandType.fromObject(command)).finish();
}

/** Decodes and checks required fields (protobufjs throws on a missing one). */
export function decodeBaseCommand(bytes: Uint8Array): BaseCommand {
  return BaseCommandType.decode(bytes) as unknown as BaseCommand;
}

export function encodeMessageMetadata(metadata: MessageMetadata): Uint8Array {
  return MessageMetadataType.encode(MessageMetadataType.fromObject(metadata)).finish();
}

export function decodeMessageMetadata(bytes: Uint8Array): MessageMetadata {
  return MessageMetadataType.decode(bytes) as unknown as MessageMetadata;
}

export function encodeSingleMessageMetadata(metadata: SingleMessageMetadata): Uint8Array {
  return SingleMessageMetadataType.encode(SingleMessageMetadataType.fromObject(metadata)).finish();
}

export function decodeSingleMessageMetadata(bytes: Uint8Array): SingleMessageMetadata {
  return SingleMessageMetadataType.decode(bytes) as unknown as SingleMessageMetadata;
}

/** True when the decoded message carries the field (not just its default). */
export function has(message: object, field: string): boolean {
  return Object.prototype.hasOwnProperty.call(message, field);
}
