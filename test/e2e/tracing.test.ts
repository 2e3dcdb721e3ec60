/**
 * OpenTelemetry traces of dispatch and execution, on both transports, read
 * from an in-memory span exporter: a `send` span per dispatch carrying the
 * caller's trace, one `process` span per batch linked to every task's send,
 * a child span per single task, the messaging attributes, errors on spans,
 * and retries in the original trace.
 */
import 'reflect-metadata';
import { SpanKind, SpanStatusCode, context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { Batch } from '../../src/service/decorators.js';
import { startSystem, type System } from '../support/system.js';
import { transportTargets } from '../support/transports.js';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
});
afterAll(async () => {
  await provider.shutdown();
  trace.disable();
  context.disable();
  propagation.disable();
});

interface Orders {
  place(item: string): Promise<string>;
  ping(): Promise<string>;
}

const flaky = new Set<string>();

class OrdersImpl {
  place(_item: string): void {}
  @Batch('place')
  async placeMany(tasks: Map<string, string>): Promise<Map<string, string | Error>> {
    return new Map(
      [...tasks].map(([id, item]): [string, string | Error] => {
        if (item.startsWith('flaky') && !flaky.has(item)) {
          flaky.add(item);
          return [id, new Error(`${item} failed once`)];
        }
        return [id, `placed ${item}`];
      }),
    );
  }
  async ping(): Promise<string> {
    return 'pong';
  }
}

const byName = (spans: ReadableSpan[], kind: SpanKind) => spans.filter((s) => s.kind === kind);
const parentOf = (span: ReadableSpan): string | undefined => span.parentSpanContext?.spanId;

for (const target of transportTargets()) {
  describe.skipIf(target.skip)(`tracing (${target.name})`, () => {
    let system: System | undefined;
    afterEach(async () => {
      await system?.stop();
      system = undefined;
      exporter.reset();
    });

    test('send spans in the caller’s trace; one batch span linked to every send; a child span per single task', async () => {
      system = await startSystem(
        [{ name: 'Orders', executor: { factory: () => new OrdersImpl(), batch: { maxMessages: 3, maxSeconds: 5 } } }],
        await target.create(),
      );
      const orders = system.client.service<Orders>('Orders', { meta: { batchKey: 'shop-1' } });
      const request = trace.getTracer('test').startSpan('request');
      await context.with(trace.setSpan(context.active(), request), async () => {
        expect(await Promise.all(['a', 'b', 'c'].map((i) => orders.place(i)))).toEqual(['placed a', 'placed b', 'placed c']);
        expect(await orders.ping()).toBe('pong');
      });
      request.end();
      const spans = exporter.getFinishedSpans();
      const sends = byName(spans, SpanKind.PRODUCER);
      expect(sends).toHaveLength(4);
      for (const send of sends) {
        expect(send.spanContext().traceId).toBe(request.spanContext().traceId);
        expect(parentOf(send)).toBe(request.spanContext().spanId);
        expect(send.attributes).toMatchObject({
          'messaging.system': target.name === 'pulsar' ? 'pulsar' : 'sheaf_inMemory',
          'messaging.destination.name': 'sheaf-tasks-Orders',
          'messaging.operation.type': 'send',
          'sheaf.service': 'Orders',
          'sheaf.batch.key': 'shop-1',
        });
        expect(send.attributes['messaging.message.id']).toMatch(/^[0-9a-f-]{36}$/);
      }
      const consumers = byName(spans, SpanKind.CONSUMER);
      const batchSpan = consumers.find((s) => s.attributes['messaging.batch.message_count'] !== undefined)!;
      expect(batchSpan.attributes).toMatchObject({
        'messaging.operation.type': 'process',
        'messaging.batch.message_count': 3,
        'sheaf.batch.key': 'shop-1',
        'sheaf.batch.flush_reason': 'maxMessages',
        'sheaf.method': 'place',
        'sheaf.batch.method': 'placeMany',
      });
      expect(typeof batchSpan.attributes['sheaf.batch.wait_ms']).toBe('number');
      const placeSends = sends.filter((s) => s.attributes['sheaf.method'] === 'place').map((s) => s.spanContext().spanId);
      expect(batchSpan.links.map((l) => l.context.spanId).sort()).toEqual(placeSends.sort());
      const pingSend = sends.find((s) => s.attributes['sheaf.method'] === 'ping')!;
      const pingSpan = consumers.find((s) => s.attributes['sheaf.method'] === 'ping')!;
      expect(parentOf(pingSpan)).toBe(pingSend.spanContext().spanId);
      expect(pingSpan.spanContext().traceId).toBe(request.spanContext().traceId);
      expect(pingSpan.attributes).toMatchObject({
        'sheaf.task.retry_index': 0,
        'messaging.message.id': pingSend.attributes['messaging.message.id'],
      });
    });

    test('a failed task marks its batch span with an error; its retry stays in the original trace', async () => {
      system = await startSystem(
        [
          {
            name: 'Orders',
            executor: {
              factory: () => new OrdersImpl(),
              batch: { maxMessages: 1, maxSeconds: 5 },
              retry: { minimumSeconds: 0.05, randomFactor: 0 },
            },
          },
        ],
        await target.create(),
      );
      const orders = system.client.service<Orders>('Orders');
      const item = `flaky-${target.name}-${Date.now()}`;
      expect(await orders.place(item)).toBe(`placed ${item}`);
      const spans = exporter.getFinishedSpans();
      const send = byName(spans, SpanKind.PRODUCER)[0]!;
      const executions = byName(spans, SpanKind.CONSUMER);
      expect(executions).toHaveLength(2);
      const [first, second] = executions;
      expect(first!.status.code).toBe(SpanStatusCode.ERROR);
      expect(first!.events.some((e) => e.name === 'exception')).toBe(true);
      expect(second!.status.code).not.toBe(SpanStatusCode.ERROR);
      // Both attempts link to the one dispatch: the retry kept its trace context.
      for (const execution of executions) expect(execution.links.map((l) => l.context.spanId)).toEqual([send.spanContext().spanId]);
    });
  });
}
