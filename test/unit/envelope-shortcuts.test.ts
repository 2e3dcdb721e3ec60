/**
 * The decoders' shortcuts (plain checks instead of zod on the hot path) must
 * never accept what the schemas refuse. Every field of a valid task and a
 * valid result is mutated in turn; wherever a shortcut accepts, zod must too.
 */
import { describe, expect, test } from 'vitest';
import { envelopeChecks } from '../../src/wire/envelopes.js';

const { isPlainTask, isPlainSuccess, taskSchema, resultSchema } = envelopeChecks;

const task = {
  v: 1,
  kind: 'task',
  taskId: 't1',
  service: 'S',
  method: 'm',
  args: [1, 'two', { three: 3 }],
  meta: { batchKey: 'k' },
  tags: ['a'],
  replyTo: 'sheaf-results-c',
  retryIndex: 0,
  retrySequence: 0,
  lastError: null,
  dispatchedAt: 1,
  trace: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
  resultBatches: true,
  job: { id: 'job-1', index: 3 },
};
const result = { v: 1, kind: 'result', taskId: 't1', service: 'S', method: 'm', outcome: 'succeeded', value: { x: 1 }, attempts: 1 };

/** Values of every JSON type and a few edge cases, put in each field's place. */
const replacements: unknown[] = [
  undefined,
  null,
  '',
  'x',
  'x'.repeat(2000),
  0,
  -1,
  1.5,
  2,
  true,
  false,
  [],
  ['x'],
  [1],
  {},
  { a: 'b' },
  { a: 1 },
  { traceparent: 7 },
  { traceparent: 'x'.repeat(300) },
  { id: 'j', index: 0 },
  { id: 'j', index: -1 },
  { id: 'j', index: 10_000_000 },
  { id: '', index: 0 },
  { id: 'x'.repeat(129), index: 0 },
  { id: 'j', index: 1.5 },
  { name: 'E', message: 'm' },
];

function* mutations(base: Record<string, unknown>): Generator<Record<string, unknown>> {
  yield base;
  for (const key of Object.keys(base)) {
    for (const value of replacements) {
      const copy: Record<string, unknown> = { ...base };
      if (value === undefined) delete copy[key];
      else copy[key] = value;
      yield copy;
    }
  }
}

describe('decoder shortcuts agree with the schemas', () => {
  test('a task the shortcut accepts, zod accepts; the valid task is taken by the shortcut', () => {
    let accepted = 0;
    for (const candidate of mutations(task)) {
      if (!isPlainTask(candidate)) continue;
      accepted += 1;
      expect(taskSchema.safeParse(candidate).success, JSON.stringify(candidate)).toBe(true);
    }
    expect(isPlainTask(task)).toBe(true);
    expect(accepted).toBeGreaterThan(1);
  });

  test('a result the shortcut accepts, zod accepts; a failure result is left to the schema', () => {
    let accepted = 0;
    for (const candidate of mutations(result)) {
      if (!isPlainSuccess(candidate)) continue;
      accepted += 1;
      expect(resultSchema.safeParse(candidate).success, JSON.stringify(candidate)).toBe(true);
    }
    expect(isPlainSuccess(result)).toBe(true);
    expect(accepted).toBeGreaterThan(1);
    expect(isPlainSuccess({ ...result, outcome: 'failed', reason: 'r', error: { name: 'E', message: 'm' } })).toBe(false);
  });
});
