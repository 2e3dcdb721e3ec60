/**
 * The demo's service: an email sender whose provider has a bulk API, so
 * sending a hundred messages in one call costs little more than sending one.
 * Some addresses misbehave on purpose, to show per-task retries and failures.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { Batch } from '../service/decorators.js';
import { NonRetryableError } from '../errors.js';
import { Task } from '../worker/context.js';

export interface Receipt {
  readonly messageId: string;
  readonly batchId: string;
}

/** The contract clients program against. */
export interface EmailService {
  send(to: string, subject: string, body: string): Promise<Receipt>;
}

export class EmailServiceImpl implements EmailService {
  /** One message per provider call: what runs for a task method without a batch variant. */
  async send(to: string, _subject: string, _body: string): Promise<Receipt> {
    const { taskId, retryIndex } = Task.context();
    const [receipt] = await this.deliver([[taskId, to, retryIndex]], `single-${taskId.slice(0, 8)}`);
    if (receipt![1] instanceof Error) throw receipt![1];
    return receipt![1];
  }

  /** The batch variant: the worker calls this with up to `maxMessages` tasks of one tenant. */
  @Batch('send')
  async sendMany(tasks: Map<string, [string, string, string]>): Promise<Map<string, Receipt | Error>> {
    const { batchId } = Task.batch();
    const entries = [...tasks].map(([taskId, [to]]) => [taskId, to, Task.contextOf(taskId).retryIndex] as const);
    return new Map(await this.deliver(entries, batchId));
  }

  /** One provider round trip: a fixed cost plus a little per message. */
  private async deliver(
    entries: ReadonlyArray<readonly [taskId: string, to: string, retryIndex: number]>,
    batchId: string,
  ): Promise<Array<[string, Receipt | Error]>> {
    await delay(2 + entries.length * 0.02);
    return entries.map(([taskId, to, retryIndex]) => {
      if (to.startsWith('bounce')) return [taskId, new NonRetryableError(`${to}: mailbox does not exist`)];
      if (to.startsWith('flaky') && retryIndex === 0) return [taskId, new Error(`${to}: provider timed out`)];
      return [taskId, { messageId: `msg-${taskId.slice(0, 8)}`, batchId }];
    });
  }
}
