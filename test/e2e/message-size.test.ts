import 'reflect-metadata';
import { afterEach, describe, expect, test } from 'vitest';
import { MessageTooLargeError, TaskFailedError } from '../../src/errors.js';
import { Batch } from '../../src/service/decorators.js';
import { readDeadLetters, startSystem, type System } from '../support/system.js';
import { transportTargets } from '../support/transports.js';

interface Reports {
  render(size: number): Promise<string>;
  store(blob: string): Promise<number>;
}

class ReportsImpl {
  render(_size: number): void {}
  @Batch('render')
  async renderMany(tasks: Map<string, number>): Promise<Map<string, string>> {
    return new Map([...tasks].map(([id, size]) => [id, 'r'.repeat(size)]));
  }
  async store(blob: string): Promise<number> {
    return blob.length;
  }
}

// Pulsar's default maxMessageSize, which the in-memory transport keeps too.
const OVER_THE_LIMIT = 5 * 1024 * 1024 + 1024;

for (const target of transportTargets()) {
  describe.skipIf(target.skip)(`messages over the broker's size limit (${target.name})`, () => {
    let system: System | undefined;
    afterEach(async () => {
      await system?.stop();
      system = undefined;
    });

    test('a task too large to send is refused by dispatch, naming its size and the limit; nothing runs', async () => {
      system = await startSystem([{ name: 'Reports', executor: { factory: () => new ReportsImpl() } }], await target.create());
      const reports = system.client.service<Reports>('Reports');
      const error = await system.client
        .dispatch(reports)
        .store('x'.repeat(OVER_THE_LIMIT))
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(MessageTooLargeError);
      expect((error as MessageTooLargeError).limit).toBe(5 * 1024 * 1024);
      expect((error as Error).message).toMatch(/producer\.chunking/);
      // The client and the worker carry on.
      expect(await reports.store('small')).toBe(5);
    });

    test('a result too large to send fails its task once (resultTooLarge), dead-lettered, never retried; its batch mates succeed', async () => {
      system = await startSystem(
        [
          {
            name: 'Reports',
            executor: { factory: () => new ReportsImpl(), batch: { maxMessages: 3, maxSeconds: 0.05 }, retry: { maximumRetries: 3 } },
          },
        ],
        await target.create(),
      );
      const reports = system.client.service<Reports>('Reports');
      const [small, big, other] = await Promise.all([
        reports.render(10),
        reports.render(OVER_THE_LIMIT).catch((e: unknown) => e),
        reports.render(20),
      ]);
      expect([small, other]).toEqual(['r'.repeat(10), 'r'.repeat(20)]);
      expect(big).toBeInstanceOf(TaskFailedError);
      expect((big as TaskFailedError).reason).toBe('resultTooLarge');
      expect((big as TaskFailedError).lastError.name).toBe('MessageTooLargeError');
      const [dead] = await readDeadLetters(system.transport, 'Reports', 1);
      expect(dead!.reason).toBe('resultTooLarge');
      expect(dead!.detail).toMatch(/over the broker's limit of 5242880 bytes/);
      // Executed once: a result that cannot be sent is not a reason to run the task again.
      expect((await system.batched(3)).reduce((n, b) => n + b.size, 0)).toBe(3);
    });
  });
}
