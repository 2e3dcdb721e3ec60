/**
 * `@Batch` and `@Params` in both decorator forms: the same service compiled
 * with legacy decorators (`experimentalDecorators`), with TC39 standard
 * decorators (TypeScript 5+ without the flag) and by esbuild (what tsx runs),
 * each loaded against the built package and run by a worker: batches form in
 * every case.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { transform } from 'esbuild';
import ts from 'typescript';
import { describe, expect, test } from 'vitest';

const root = new URL('../../', import.meta.url).pathname;
const dist = `${root}dist/index.js`;
const source = readFileSync(`${root}test/fixtures/decorators/shop.ts`, 'utf8');
const outDir = `${root}node_modules/.cache/sheaf-decorator-forms`;

type Sheaf = typeof import('../../src/index.js');

async function compile(form: 'legacy' | 'standard' | 'esbuild'): Promise<Record<string, new () => object>> {
  let js: string;
  if (form === 'esbuild') {
    js = (await transform(source, { loader: 'ts', format: 'esm', target: 'es2022' })).code;
  } else {
    js = ts.transpileModule(source, {
      compilerOptions: {
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.ESNext,
        experimentalDecorators: form === 'legacy',
        emitDecoratorMetadata: form === 'legacy',
        useDefineForClassFields: false,
      },
    }).outputText;
  }
  mkdirSync(outDir, { recursive: true });
  const file = `${outDir}/shop-${form}.mjs`;
  writeFileSync(file, js.replace(/from ['"][./]*src\/index\.js['"]/, `from '${dist}'`));
  return (await import(`${file}?t=${Date.now()}`)) as Record<string, new () => object>;
}

describe.each(['legacy', 'standard', 'esbuild'] as const)('decorators compiled as %s', (form) => {
  test('@Batch is recorded and used: tasks run in batches, with their @Params checks', async () => {
    const sheaf = (await import(dist)) as Sheaf;
    const { ShopImpl, SubShopImpl } = await compile(form);
    const transport = new sheaf.InMemoryTransport();
    const worker = new sheaf.SheafWorker({
      transport,
      logger: (await import('../support/logger.js')).testLogger,
      services: [
        { name: 'Shop', executor: { factory: () => new ShopImpl!(), batch: { maxMessages: 5, maxSeconds: 5 } } },
        { name: 'SubShop', executor: { factory: () => new SubShopImpl!(), batch: { maxMessages: 2, maxSeconds: 5 } } },
      ],
    });
    await worker.start();
    const client = await sheaf.SheafClient.connect({ transport });
    try {
      const shop = client.service<{ order(sku: string, quantity: number): Promise<string>; ping(): Promise<string> }>('Shop');
      const results = await Promise.all([1, 2, 3, 4, 5].map((n) => shop.order(`sku-${n}`, n)));
      expect(results).toEqual([1, 2, 3, 4, 5].map((n) => `${n} × sku-${n} (batch of 5)`));
      expect(await shop.ping()).toBe('pong');
      // @Params is in force: a wrong argument type never runs.
      await expect((shop.order as unknown as (a: string, b: string) => Promise<string>)('sku', 'three')).rejects.toMatchObject({
        reason: 'wrongArguments',
      });
      // Inherited from the declaring class.
      const sub = client.service<{ order(sku: string, quantity: number): Promise<string> }>('SubShop');
      expect(await Promise.all([sub.order('a', 1), sub.order('b', 2)])).toEqual(['1 × a (batch of 2)', '2 × b (batch of 2)']);
    } finally {
      await worker.close();
      await client.close();
      await transport.close();
    }
  });
});

test('standard @Params() with no types says it needs legacy decorators with emitDecoratorMetadata', async () => {
  const js = ts.transpileModule(`import { Params } from '${dist}';\nexport class S { @Params() send(to: string) { return to; } }`, {
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, experimentalDecorators: false },
  }).outputText;
  mkdirSync(outDir, { recursive: true });
  writeFileSync(`${outDir}/params-standard.mjs`, js);
  await expect(import(`${outDir}/params-standard.mjs`)).rejects.toThrow(
    /@Params\(\) on send has no types to read: .*"experimentalDecorators" and "emitDecoratorMetadata".*@Params\(String, Address\)/,
  );
});

describe.each([true, false])('@Batch type checks (experimentalDecorators: %s)', (experimentalDecorators) => {
  test('a batch method must take a Map and return a Map or nothing', () => {
    const program = ts.createProgram([`${root}test/fixtures/decorators/batch-types.ts`], {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      experimentalDecorators,
      types: ['node'],
    });
    const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    // No unexpected error, and no unused @ts-expect-error: both wrong shapes were refused.
    expect(diagnostics).toEqual([]);
  }, 60_000);
});
