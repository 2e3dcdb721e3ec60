import { PassThrough } from 'node:stream';
import { expect, test } from 'vitest';
import { runDemo } from '../../src/demo/run-demo.js';

test('the demo accounts for every task and summarises how they were batched', async () => {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  const result = await runDemo({ tasks: 1000, out });
  const text = Buffer.concat(chunks).toString('utf8');
  // Of 1000 addresses, every 500th bounces (2) and every 200th other one is flaky (5 − 1 overlap = 4).
  expect(result).toEqual({ ok: true, succeeded: 998, failed: 2, retried: 4 });
  for (const tenant of ['tenant-acme', 'tenant-globex', 'tenant-initech', 'tenant-umbrella']) expect(text).toContain(tenant);
  expect(text).toMatch(/batch key +executions +batches +min +avg +max +maxMessages +maxSeconds/);
});
