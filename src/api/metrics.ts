import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { ApiDeps } from './deps.js';

/** An event stream (SSE, WebSocket) lasts as long as its client stays: no request latency. */
function isStream(request: FastifyRequest, reply: FastifyReply): boolean {
  const type = reply.getHeader('content-type');
  return (
    request.headers.upgrade?.toLowerCase() === 'websocket' ||
    (typeof type === 'string' && type.startsWith('text/event-stream'))
  );
}

/**
 * GET /metrics (monitor scope, which admin implies): the process's Prometheus registry (src/ops/metrics.ts). Every
 * response is observed by route pattern and status: requests that waited for their job
 * (`Prefer: wait` applied) in their own histogram, streams not at all (they are counted in
 * stockflow_stream_connections). Route latencies also go to the pooled windows of the
 * route_latency alert.
 */
export function registerMetrics(app: FastifyInstance, deps: Pick<ApiDeps, 'metrics' | 'latencies'>): void {
  const { metrics, latencies } = deps;
  app.addHook('onResponse', async (request, reply) => {
    if (isStream(request, reply)) return;
    // The route pattern, not the URL: one series per route whatever the ids in the path.
    const route = request.routeOptions.url ?? 'unknown';
    const labels = { method: request.method, route, status: String(reply.statusCode) };
    const seconds = reply.elapsedTime / 1000;
    if (reply.hasHeader('preference-applied')) {
      metrics.httpWaits.observe(labels, seconds);
      return;
    }
    metrics.httpRequests.observe(labels, seconds);
    latencies.record(`${request.method} ${route}`, seconds);
  });

  const exposition = { description: 'Prometheus text exposition format', schema: z.string() };
  const schema = {
    tags: ['operations'],
    summary:
      'Prometheus metrics: process, HTTP, queues and jobs, webhooks, cache, Postgres pool, streams, stock',
    response: { 200: { description: 'The metrics', content: { 'text/plain': exposition } } },
  };
  app.get('/metrics', { config: { scope: 'monitor' }, schema }, async (_request, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
}
