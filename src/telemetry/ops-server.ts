/**
 * The worker's operations endpoint, on one port (`sheaf worker --metrics-port`
 * or `metrics.port` in sheaf.yml):
 *
 *   /metrics           Prometheus text, from the OpenTelemetry Prometheus exporter
 *   /healthz           200 while the process runs and its event loop is not stalled
 *   /readyz            200 while the worker is running (connected and consuming);
 *                      503 while starting, draining, closed or after it failed
 *   /dashboard         the live dashboard page (with `dashboard: true`)
 *   /dashboard/events  its server-sent events: one snapshot a second
 *
 * `registerMetrics()` must run before the worker starts: the metrics API has
 * no proxy, so instruments made before a provider is registered stay no-ops.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { metrics } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { DashboardModel, type DashboardSource } from './dashboard-model.js';
import { DASHBOARD_PAGE } from './dashboard-page.js';

/** Registers a global meter provider whose only reader is a Prometheus exporter (no server of its own). */
export function registerMetrics(): { exporter: PrometheusExporter; provider: MeterProvider } {
  const exporter = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
  const provider = new MeterProvider({ readers: [exporter] });
  metrics.setGlobalMeterProvider(provider);
  return { exporter, provider };
}

export interface OpsServerOptions {
  readonly port: number;
  /** Default 0.0.0.0 (probes come from outside the container). */
  readonly host?: string;
  readonly worker: DashboardSource;
  readonly exporter: PrometheusExporter;
  readonly dashboard?: boolean;
  /** The event loop counts as stalled past this lag. Default 5000 ms. */
  readonly maxEventLoopLagMs?: number;
}

export interface OpsServer {
  readonly url: string;
  close(): Promise<void>;
}

const LAG_SAMPLE_MS = 500;

export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const maxLag = options.maxEventLoopLagMs ?? 5000;
  // Event loop lag: how late a timer that should fire every LAG_SAMPLE_MS actually fires.
  let lastTick = Date.now();
  let lagMs = 0;
  const lagTimer = setInterval(() => {
    const now = Date.now();
    lagMs = Math.max(0, now - lastTick - LAG_SAMPLE_MS);
    lastTick = now;
  }, LAG_SAMPLE_MS);
  lagTimer.unref();
  const model = options.dashboard ? new DashboardModel(options.worker) : null;
  const streams = new Set<ServerResponse>();
  const push = setInterval(() => {
    if (!model || streams.size === 0) return;
    const data = `data: ${JSON.stringify(model.snapshot())}\n\n`;
    for (const res of streams) res.write(data);
  }, 1000);
  push.unref();

  const json = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'only GET' });
    switch (path) {
      case '/metrics':
        return options.exporter.getMetricsRequestHandler(req, res);
      case '/healthz': {
        const stalled = Date.now() - lastTick > maxLag || lagMs > maxLag;
        return json(res, stalled ? 503 : 200, { status: stalled ? 'stalled' : 'ok', eventLoopLagMs: lagMs });
      }
      case '/readyz': {
        const status = options.worker.state.status;
        // Running but cut off from the broker (a refused token while it retries, a broker down): not ready, and why.
        const problem = options.worker.connectionProblem ?? null;
        if (status === 'running' && problem !== null) return json(res, 503, { status, connection: problem });
        return json(res, status === 'running' ? 200 : 503, { status });
      }
      case '/dashboard':
        if (!model) break;
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
        return void res.end(DASHBOARD_PAGE);
      case '/dashboard/events':
        if (!model) break;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
        res.write(`data: ${JSON.stringify(model.snapshot())}\n\n`);
        streams.add(res);
        req.on('close', () => streams.delete(res));
        return;
      default:
    }
    json(res, 404, { error: `no ${path} here`, endpoints: ['/metrics', '/healthz', '/readyz', ...(model ? ['/dashboard'] : [])] });
  };

  const server: Server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.address === '0.0.0.0' || address.address === '::' ? '127.0.0.1' : address.address;
  return {
    url: `http://${host}:${address.port}`,
    async close() {
      clearInterval(lagTimer);
      clearInterval(push);
      model?.close();
      for (const res of streams) res.end();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
