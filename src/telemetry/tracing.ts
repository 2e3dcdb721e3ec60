/**
 * OpenTelemetry tracing, on `@opentelemetry/api` alone: with no SDK
 * registered every call here is a no-op, so users who do not trace pay (almost)
 * nothing, and users who do see Sheaf's spans in their own pipeline.
 *
 * - The client starts a `send` span (PRODUCER) per dispatch and injects its
 *   context into the task envelope (`trace`: W3C traceparent/tracestate).
 *   Retries copy the envelope, so every attempt stays in the original trace.
 * - The worker starts one `process` span (CONSUMER) per batch execution, with
 *   a link to every task's dispatch context (a batch has many parents), and
 *   one span per single-task execution, a child of the task's dispatch.
 *
 * Attributes follow the OpenTelemetry messaging conventions where they fit;
 * Sheaf's own are under `sheaf.*`.
 */
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context,
  propagation,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
} from '@opentelemetry/api';
import type { TraceCarrier } from '../wire/envelopes.js';

// A ProxyTracer: it follows whatever provider is registered later, so one can be kept.
const sheafTracer = trace.getTracer('sheaf');
const tracer = () => sheafTracer;

/** `messaging.system` for a transport kind. */
export function messagingSystem(transportKind: string): string {
  return transportKind === 'pulsar' ? 'pulsar' : `sheaf_${transportKind}`;
}

/** Starts the dispatch span of one task and returns it with the carrier to put in the envelope. */
export function startSendSpan(attributes: {
  transport: string;
  topic: string;
  taskId: string;
  service: string;
  method: string;
  batchKey: string | undefined;
}): { span: Span; carrier: TraceCarrier | undefined } {
  const span = tracer().startSpan(`send ${attributes.topic}`, { kind: SpanKind.PRODUCER });
  // Every dispatch passes here: with no SDK (or a span sampled out) build nothing more.
  if (!span.isRecording()) return { span, carrier: undefined };
  span.setAttributes({
    'messaging.system': messagingSystem(attributes.transport),
    'messaging.destination.name': attributes.topic,
    'messaging.operation.type': 'send',
    'messaging.message.id': attributes.taskId,
    'sheaf.service': attributes.service,
    'sheaf.method': attributes.method,
    ...(attributes.batchKey !== undefined ? { 'sheaf.batch.key': attributes.batchKey } : {}),
  });
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(context.active(), span), carrier);
  return { span, carrier: carrier.traceparent ? (carrier as TraceCarrier) : undefined };
}

/** Ends a span, recording the error (if any) with an ERROR status. */
export function endSpan(span: Span, error?: unknown): void {
  if (error !== undefined) failSpan(span, error);
  span.end();
}

function failSpan(span: Span, error: unknown): void {
  span.recordException(error instanceof Error ? error : String(error));
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
}

function dispatchContext(carrier: TraceCarrier | undefined): Context {
  return carrier?.traceparent ? propagation.extract(ROOT_CONTEXT, carrier) : ROOT_CONTEXT;
}

/**
 * Runs one batch execution inside a CONSUMER span linked to every task's
 * dispatch. `failed` names the tasks whose outcome is an error, so the span
 * says how many failed.
 */
export async function inBatchSpan<T>(
  attributes: () => Attributes,
  name: string,
  carriers: () => Iterable<TraceCarrier | undefined>,
  run: (span: Span) => Promise<T>,
): Promise<T> {
  const span = tracer().startSpan(name, { kind: SpanKind.CONSUMER });
  // Attributes and links are built only for a recording span: with no SDK, a batch costs no allocations here.
  if (span.isRecording()) {
    span.setAttributes(attributes());
    const links: Link[] = [];
    for (const carrier of carriers()) {
      const spanContext = trace.getSpanContext(dispatchContext(carrier));
      if (spanContext) links.push({ context: spanContext });
    }
    if (links.length > 0) span.addLinks(links);
  }
  return runIn(span, trace.setSpan(context.active(), span), run);
}

/** Runs one single-task execution in a CONSUMER span, a child of the task's dispatch span. */
export async function inTaskSpan<T>(
  attributes: () => Attributes,
  name: string,
  carrier: TraceCarrier | undefined,
  run: (span: Span) => Promise<T>,
): Promise<T> {
  const parent = dispatchContext(carrier);
  const span = tracer().startSpan(name, { kind: SpanKind.CONSUMER }, parent);
  if (span.isRecording()) span.setAttributes(attributes());
  return runIn(span, trace.setSpan(parent, span), run);
}

async function runIn<T>(span: Span, ctx: Context, run: (span: Span) => Promise<T>): Promise<T> {
  try {
    return await context.with(ctx, () => run(span));
  } catch (error) {
    failSpan(span, error);
    throw error;
  } finally {
    span.end();
  }
}

/** Marks a finished execution span as failed (the execution returned an error rather than throwing). */
export function markFailed(span: Span, error: unknown): void {
  if (span.isRecording()) failSpan(span, error);
}
