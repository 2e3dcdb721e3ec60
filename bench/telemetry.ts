/**
 * OpenTelemetry SDKs registered as a user's app would register them, but with
 * nothing attached to export: spans are recorded and dropped, metrics are
 * aggregated and never read. What the benchmark compares with no SDK at all.
 */
import { context, metrics, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { AlwaysOnSampler, BasicTracerProvider } from '@opentelemetry/sdk-trace-base';

export function enableTelemetry(): { disable(): Promise<void> } {
  const tracerProvider = new BasicTracerProvider({ sampler: new AlwaysOnSampler() });
  const meterProvider = new MeterProvider();
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(tracerProvider);
  metrics.setGlobalMeterProvider(meterProvider);
  return {
    async disable() {
      await Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]);
      trace.disable();
      metrics.disable();
      propagation.disable();
      context.disable();
    },
  };
}
