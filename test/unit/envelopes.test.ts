import { describe, expect, test } from 'vitest';
import { decodeResult, decodeResults, decodeTask, encodeEnvelope, salvageTaskFields, type TaskEnvelope } from '../../src/wire/envelopes.js';
import { fromErrorInfo, toErrorInfo } from '../../src/wire/error-info.js';
import { DecodeError, NonRetryableError } from '../../src/errors.js';

const task: TaskEnvelope = {
  v: 1,
  kind: 'task',
  taskId: 't1',
  service: 'EmailService',
  method: 'send',
  args: ['a@b.c', { nested: [1, 2] }],
  meta: { batchKey: 'tenant-1' },
  tags: ['x'],
  replyTo: 'sheaf-results-c1',
  retryIndex: 0,
  retrySequence: 0,
  lastError: null,
  dispatchedAt: 1700000000000,
};
const enc = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

describe('envelopes', () => {
  test('a task envelope round-trips', () => {
    expect(decodeTask(encodeEnvelope(task))).toEqual(task);
  });

  test('an isolation retry round-trips with its group; a bad group is refused by name', () => {
    const isolated: TaskEnvelope = { ...task, isolation: { group: 'g-1', size: 8, step: 1 } };
    expect(decodeTask(encodeEnvelope(isolated))).toEqual(isolated);
    expect(() => decodeTask(enc({ ...task, isolation: { group: 'g', size: 0, step: 1 } }))).toThrow(/isolation\.size/);
  });

  test.each([
    ['bytes that are not UTF-8', new Uint8Array([0xff, 0xfe, 0x80]), /not valid UTF-8/],
    ['invalid JSON', new TextEncoder().encode('{"v":1,'), /not JSON/],
    ['a JSON array', enc([1, 2]), /not a JSON object/],
    ['an unknown wire version', enc({ ...task, v: 2 }), /wire version 2; this Sheaf reads version 1/],
    ['a result where a task belongs', enc({ ...task, kind: 'result' }), /expected a task envelope, got kind "result"/],
    ['a missing field', enc({ ...task, taskId: undefined }), /taskId/],
    ['args that are not a list', enc({ ...task, args: 'x' }), /args/],
    ['a meta value that is not a string', enc({ ...task, meta: { batchKey: 3 } }), /meta\.batchKey/],
    ['an isolation group without its size', enc({ ...task, isolation: { group: 'g', step: 1 } }), /isolation\.size/],
  ])('rejects %s with a DecodeError that says why', (_, payload, reason) => {
    expect(() => decodeTask(payload)).toThrow(DecodeError);
    expect(() => decodeTask(payload)).toThrow(reason);
  });

  test('salvages the task id and reply topic from a payload that fails validation', () => {
    expect(salvageTaskFields(enc({ ...task, args: 'x' }))).toMatchObject({ taskId: 't1', replyTo: 'sheaf-results-c1' });
    expect(salvageTaskFields(new Uint8Array([0xff]))).toEqual({});
  });

  test('a failed result carries the error, its name, fields and cause', () => {
    class CodedError extends Error {
      override name = 'CodedError';
      code = 'E42';
    }
    const info = toErrorInfo(new CodedError('outer', { cause: new RangeError('inner') }));
    const payload = encodeEnvelope({
      v: 1,
      kind: 'result',
      taskId: 't1',
      service: 'S',
      method: 'm',
      outcome: 'failed',
      reason: 'retriesExhausted',
      error: info,
      attempts: 3,
    });
    const decoded = decodeResult(payload);
    expect(decoded.outcome).toBe('failed');
    const rebuilt = fromErrorInfo((decoded as { error: typeof info }).error);
    expect(rebuilt.name).toBe('CodedError');
    expect(rebuilt.data).toEqual({ code: 'E42' });
    expect((rebuilt.cause as Error).name).toBe('RangeError');
  });

  test("errors travel by an allowlist: name, message, code, a Sheaf error's details, the cause; no stack unless asked; credentials redacted", () => {
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3b3JrZXIifQ.c2lnbmF0dXJl';
    const leaky = Object.assign(
      new Error(
        `call to https://svc:hunter2@api.example/x failed: Authorization: Bearer abcdef123456 password=swordfish apiKey: k-123 ${jwt}`,
      ),
      {
        code: 'ECONNRESET',
        request: { headers: { Authorization: 'Bearer abcdef123456' } },
        config: { connectionString: 'postgres://u:p@db/x' },
      },
    );
    const info = toErrorInfo(
      new NonRetryableError('quota', { cause: leaky, details: { quota: 10, token: 'sekrit', note: 'Bearer zzzzzzzzzz' } }),
    );
    const text = JSON.stringify(info);
    for (const secret of ['hunter2', 'abcdef123456', 'swordfish', 'k-123', jwt, 'sekrit', 'zzzzzzzzzz', 'postgres://'])
      expect(text).not.toContain(secret);
    expect(info.stack).toBeUndefined();
    expect(info.data).toEqual({ details: { quota: 10, token: '[redacted]', note: 'Bearer [redacted]' } });
    expect(info.cause).toMatchObject({ name: 'Error', data: { code: 'ECONNRESET' } });
    expect(info.cause!.message).toContain('https://[redacted]@api.example/x');
    expect(toErrorInfo(new Error('x'), { includeStack: true }).stack).toMatch(/^Error: x\n/);
    expect(toErrorInfo({ password: 'p1', user: 'u' }).message).toBe('{"password":"[redacted]","user":"u"}');
  });

  test('redaction stays linear on hostile text and cuts what is past 64 KiB', () => {
    // Runs of look-alikes (schemes, JWT starts, key names) that unbounded patterns would rescan from every position.
    const hostile = `${'a.'.repeat(100_000)}${'eyJ-'.repeat(50_000)}${'token='.repeat(20_000)}`;
    const info = toErrorInfo(new Error(hostile));
    expect(info.message.length).toBeLessThan(70 * 1024);
    expect(info.message).toMatch(/… \(cut at 65536 characters\)$/);
  });

  test('a thrown non-error is described', () => {
    expect(toErrorInfo('plain string')).toEqual({ name: 'NonErrorThrown', message: 'plain string' });
    expect(toErrorInfo({ code: 1 })).toEqual({ name: 'NonErrorThrown', message: '{"code":1}' });
  });

  test('decodeResults reads a single result and a batch of results; a bad batch is a DecodeError naming the entry', () => {
    const ok = (taskId: string) => ({
      v: 1 as const,
      kind: 'result' as const,
      taskId,
      service: 'S',
      method: 'm',
      outcome: 'succeeded' as const,
      value: taskId,
      attempts: 1,
    });
    expect(decodeResults(encodeEnvelope(ok('a'))).map((r) => r.taskId)).toEqual(['a']);
    const batch = encodeEnvelope({ v: 1, kind: 'resultBatch', results: [ok('a'), ok('b'), ok('c')] });
    expect(decodeResults(batch).map((r) => r.taskId)).toEqual(['a', 'b', 'c']);
    // A batch is not a single result: readers of one kind never mistake the other.
    expect(() => decodeResult(batch)).toThrow(/expected a result envelope, got kind "resultBatch"/);
    const bad = Buffer.from(JSON.stringify({ v: 1, kind: 'resultBatch', results: [ok('a'), { ...ok('b'), taskId: '' }] }));
    expect(() => decodeResults(bad)).toThrow(DecodeError);
    expect(() => decodeResults(bad)).toThrow(/results\.1\.taskId/);
    expect(() => decodeResults(Buffer.from(JSON.stringify({ v: 1, kind: 'resultBatch', results: [] })))).toThrow(/results/);
    expect(() => decodeResults(Buffer.from(JSON.stringify({ v: 2, kind: 'resultBatch', results: [ok('a')] })))).toThrow(/wire version 2/);
  });
});
