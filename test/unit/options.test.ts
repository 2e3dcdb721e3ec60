import { describe, expect, test } from 'vitest';
import { compileWorkerOptions, type WorkerOptions } from '../../src/worker/options.js';
import {
  compileExecutorSettings,
  executorSettingsOf,
  executorSettingsShape,
  type ExecutorSettings,
} from '../../src/config/executor-schema.js';
import { InMemoryTransport } from '../../src/transport/memory/in-memory-transport.js';
import { ConfigError } from '../../src/errors.js';
import { testLogger } from '../support/logger.js';

const transport = new InMemoryTransport();
const base = (executor: Record<string, unknown> = {}): WorkerOptions => ({
  transport,
  logger: testLogger,
  services: [{ name: 'EmailService', executor: { factory: () => ({}), ...executor } }],
});

function issuesOf(options: unknown): string[] {
  try {
    compileWorkerOptions(options as WorkerOptions);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error('expected a ConfigError');
}

describe('compileWorkerOptions', () => {
  test('applies the documented defaults', () => {
    const compiled = compileWorkerOptions(base());
    const service = compiled.services[0]!;
    expect(service).toMatchObject({
      concurrency: 1,
      timeoutMs: 60_000,
      maxUnacked: 200,
      batch: { maxMessages: 100, maxSeconds: 1, maxBytes: undefined },
      retry: { minimumSeconds: 1, maximumSeconds: 1000, backoffCoefficient: 2, randomFactor: 0.5, maximumRetries: 11, ignoredErrors: [] },
    });
    expect(service.isolation).toBe('bisect');
    expect(compiled.name).toMatch(/^worker-/);
  });

  test('a compiled executor (as a sheaf.yml loads it) hands every key on to the worker', () => {
    // Every key set away from its default: a key the hand-over forgot would come back as the default.
    const settings: Required<ExecutorSettings> = {
      concurrency: 5,
      maxConcurrencyPerKey: 5,
      timeoutSeconds: 7,
      maxUnacked: 900,
      batch: { maxMessages: 30, maxSeconds: 0.25, maxBytes: 4096 },
      retry: { minimumSeconds: 2, maximumSeconds: 9, backoffCoefficient: 3, randomFactor: 0.1, maximumRetries: 4, ignoredErrors: ['E'] },
      settledCache: { maxTasks: 12, maxSeconds: 34 },
      isolation: 'single',
    };
    expect(Object.keys(settings).sort()).toEqual(Object.keys(executorSettingsShape).sort());
    const compiled = compileExecutorSettings(settings, 'x', []);
    expect(compileExecutorSettings(executorSettingsOf(compiled), 'x', [])).toEqual(compiled);
    expect(compiled).toMatchObject({ maxConcurrencyPerKey: 5, isolation: 'single', settledCache: { maxTasks: 12, maxAgeMs: 34_000 } });
  });

  test('maxConcurrencyPerKey leaves other keys a slot by default, and may not pass concurrency', () => {
    expect(compileWorkerOptions(base()).services[0]!.maxConcurrencyPerKey).toBe(1);
    expect(compileWorkerOptions(base({ concurrency: 4 })).services[0]!.maxConcurrencyPerKey).toBe(3);
    expect(compileWorkerOptions(base({ concurrency: 4, maxConcurrencyPerKey: 4 })).services[0]!.maxConcurrencyPerKey).toBe(4);
    expect(() => compileWorkerOptions(base({ concurrency: 2, maxConcurrencyPerKey: 3 }))).toThrow(
      /services\[0\]\.executor\.maxConcurrencyPerKey: must be at most concurrency \(2\) \(got 3\)/,
    );
  });

  test('maximumSeconds defaults to 1000 × minimumSeconds', () => {
    expect(compileWorkerOptions(base({ retry: { minimumSeconds: 0.5 } })).services[0]!.retry.maximumSeconds).toBe(500);
  });

  test('reports every problem at once, by path, with what was given', () => {
    const issues = issuesOf(base({ concurrency: 0, batch: { maxMessages: 0, maxSeconds: -1 }, retry: { randomFactor: 2 } }));
    expect(issues).toEqual(
      expect.arrayContaining([
        'services[0].executor.concurrency: must be a positive integer (got 0)',
        'services[0].executor.batch.maxMessages: must be a positive integer (got 0)',
        'services[0].executor.batch.maxSeconds: must be a positive number (got -1)',
        'services[0].executor.retry.randomFactor: must be between 0 and 1 (got 2)',
      ]),
    );
    expect(issues).toHaveLength(4);
  });

  test('unknown keys are errors that name the key and suggest the right one', () => {
    const issues = issuesOf(base({ batch: { maxMesages: 10 } }));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatch(
      /^services\[0\]\.executor\.batch\.maxMesages: unknown key; did you mean 'maxMessages'\? \(allowed here: maxMessages, maxSeconds, maxBytes\)/,
    );
  });

  test('an in-flight bound larger than maxUnacked is an error with the numbers and the fix', () => {
    const issues = issuesOf(base({ concurrency: 10, batch: { maxMessages: 100 }, maxUnacked: 500 }));
    expect(issues).toEqual([
      'services[0].executor.maxUnacked: must be at least concurrency × batch.maxMessages = 10 × 100 = 1000 (got 500); ' +
        'otherwise batches can never fill. Raise maxUnacked, or lower concurrency or batch.maxMessages',
    ]);
  });

  test('service names must be unique and safe for topic names', () => {
    const issues = issuesOf({
      transport,
      services: [
        { name: 'Email', executor: { factory: () => ({}) } },
        { name: 'Email', executor: { factory: () => ({}) } },
        { name: 'bad name!', executor: { factory: () => ({}) } },
      ],
    });
    expect(issues).toEqual(expect.arrayContaining([expect.stringMatching(/^services\[2\]\.name: must start with a letter/)]));
    // Duplicate detection runs once the shapes are valid.
    const dup = issuesOf({
      transport,
      services: [
        { name: 'Email', executor: { factory: () => ({}) } },
        { name: 'Email', executor: { factory: () => ({}) } },
      ],
    });
    expect(dup).toEqual(["services[1].name: duplicates services[0].name 'Email'; each service is declared once"]);
  });

  test('a missing factory and a missing transport are named', () => {
    const issues = issuesOf({ services: [{ name: 'Email', executor: {} }] });
    expect(issues).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^transport: must be a transport, e\.g\. new InMemoryTransport\(\)/),
        expect.stringMatching(/^services\[0\]\.executor\.factory: must be a function that returns the service instance/),
      ]),
    );
  });

  test('the ConfigError message lists the problems', () => {
    expect(() => compileWorkerOptions(base({ concurrency: 0 }))).toThrow(
      /Invalid configuration in worker options \(1 problem\):\n {2}- services\[0\]\.executor\.concurrency: must be a positive integer \(got 0\)/,
    );
  });
});

describe('client.dispatch() options', () => {
  test('the common options pass; a wrong type or an unknown key is a ConfigError naming it', async () => {
    const { SheafClient } = await import('../../src/client/client.js');
    const transport = new InMemoryTransport();
    const client = await SheafClient.connect({ transport, logger: testLogger });
    try {
      const stub = client.service<{ run(): Promise<void> }>('S');
      expect(() => client.dispatch(stub, { batchKey: 'k', fireAndForget: true })).not.toThrow();
      expect(() => client.dispatch(stub, { batchKey: 'k', meta: { a: 'b' }, tags: ['t'] })).not.toThrow();
      const wrong = (options: unknown) => () => client.dispatch(stub, options as never);
      expect(wrong({ batchKey: 7 })).toThrow(/batchKey: must be a string/);
      expect(wrong({ fireAndForget: 'yes' })).toThrow(/fireAndForget: must be true or false/);
      expect(wrong({ batchkey: 'k' })).toThrow(/batchkey: unknown key; did you mean 'batchKey'\?/);
      expect(wrong({ meta: { n: 1 } })).toThrow(/meta\.n: must be a string/);
    } finally {
      await client.close();
      await transport.close();
    }
  });
});
