import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { z } from 'zod';
import type { Queues } from '../queues/queues.js';

const jobStates = ['waiting', 'delayed', 'active', 'completed', 'failed', 'prioritized'] as const;

/**
 * Prometheus metrics at GET /metrics (admin scope): process metrics, request durations by route
 * and status, and job counts per queue and state read from Redis at scrape time.
 */
export function registerMetrics(app: FastifyInstance, queues: Queues): void {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'stockflow_' });
  const requests = new Histogram({
    name: 'stockflow_http_request_duration_seconds',
    help: 'HTTP request duration by method, route pattern and status code',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30],
    registers: [registry],
  });
  new Gauge({
    name: 'stockflow_queue_jobs',
    help: 'Jobs per queue and state',
    labelNames: ['queue', 'state'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      await Promise.all(
        Object.entries(queues).map(async ([name, queue]) => {
          const counts = await queue.getJobCounts(...jobStates);
          for (const state of jobStates) this.set({ queue: name, state }, counts[state] ?? 0);
        }),
      );
    },
  });

  app.addHook('onResponse', async (request, reply) => {
    // The route pattern, not the URL: one series per route whatever the ids in the path.
    const route = request.routeOptions.url ?? 'unknown';
    requests.observe(
      { method: request.method, route, status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });

  const exposition = { description: 'Prometheus text exposition format', schema: z.string() };
  const schema = {
    tags: ['operations'],
    summary: 'Prometheus metrics: process, HTTP request durations, jobs per queue and state',
    response: { 200: { description: 'The metrics', content: { 'text/plain': exposition } } },
  };
  app.get('/metrics', { config: { scope: 'admin' }, schema }, async (_request, reply) => {
    reply.type(registry.contentType);
    return registry.metrics();
  });
}
