import { num, type MessageIdData } from './commands.js';

/**
 * Message ids as Sheaf's transport contract sees them: an opaque string,
 * `ledger:entry:partition:batchIndex`, built the same way by producers and
 * consumers (partition is -1 on a non-partitioned topic, batchIndex -1 for a
 * message that is not part of a batch).
 */
export function formatMessageId(data: MessageIdData, partition: number, batchIndex: number): string {
  return `${num(data.ledgerId)}:${num(data.entryId)}:${partition}:${batchIndex}`;
}

export interface ParsedMessageId {
  readonly ledgerId: number;
  readonly entryId: number;
  readonly partition: number;
  readonly batchIndex: number;
}

export function parseMessageId(id: string): ParsedMessageId {
  const [ledgerId, entryId, partition, batchIndex] = id.split(':').map(Number);
  return { ledgerId: ledgerId!, entryId: entryId!, partition: partition ?? -1, batchIndex: batchIndex ?? -1 };
}

/** The entry a message id belongs to, as the protocol names it in ACK and REDELIVER. */
export function entryIdData(id: ParsedMessageId): MessageIdData {
  return { ledgerId: id.ledgerId, entryId: id.entryId, partition: id.partition };
}

/** A partition's topic name, as Pulsar names partitions. */
export const partitionTopic = (topic: string, index: number): string => `${topic}-partition-${index}`;
