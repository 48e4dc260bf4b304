import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alertSettingsOf, evaluateAlerts, observeRedis } from '../../src/ops/alerts.js';
import { readRouteLatencies } from '../../src/ops/latency-windows.js';
import { maintenanceJobs } from '../../src/queues/maintenance.js';
import { redisKeys } from '../../src/redis-keys.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';

/**
 * Each platform alert opens once and resolves once, on a fake clock: the evaluation is given its
 * `now`, everything it observes is real (queues, failed jobs, pooled route latencies, endpoints,
 * stock levels).
 */
let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext({
    workers: ['products', 'inventory'],
    env: {
      ALERT_HOLD_DOWN: '60s',
      ALERT_QUEUE_WAITING_MAX: '3',
      ALERT_QUEUE_WAITING_FOR: '10s',
      ALERT_OLDEST_WAITING_MAX: '30s',
      ALERT_FAILED_PER_MINUTE: '2',
      ALERT_ROUTE_MIN_REQUESTS: '20',
      ALERT_EVALUATION_INTERVAL: '1h',
    },
  });
});
afterAll(() => ctx.close());

const wait = { prefer: 'wait=10' };
const t0 = Date.now();
const at = (seconds: number) => new Date(t0 + seconds * 1000);

/** One evaluation at t0 + seconds, observing the Redis side at that time too. */
async function evaluate(seconds: number) {
  const now = at(seconds);
  const redisFiring = await observeRedis(
    { config: ctx.config, redis: ctx.api.redis, queues: ctx.api.queues },
    now.getTime(),
  );
  return evaluateAlerts(ctx.api.db, { now, redisFiring, settings: alertSettingsOf(ctx.config) });
}

const alertEvents = () =>
  ctx.api
    .db('events')
    .whereIn('type', ['alert.opened', 'alert.resolved'])
    .orderBy('seq')
    .select('type', 'data');
const names = (alerts: { rule: string; subject: string }[]) =>
  alerts.map((a) => `${a.rule}/${a.subject}`).sort();

describe('platform alerts', () => {
  it('opens each alert once when its condition holds, keeps it through flapping, resolves it once', async () => {
    // queue_backlog and queue_oldest_waiting: 5 image jobs wait (no image worker runs here).
    for (let i = 0; i < 5; i++) {
      await ctx.api.queues.images.add(
        'image.process',
        { payload: {}, meta: { actor: 'test' } },
        { jobId: `images-wait-${i}` },
      );
    }
    // job_failures: three creates of a taken sku fail for good.
    const product = { sku: 'AL-1', name: 'n', price: { amount: 1, currency: 'EUR' } };
    await ctx.request({ method: 'POST', url: '/api/pms/products', headers: wait, payload: product });
    for (let i = 0; i < 3; i++) {
      const res = await ctx.request({
        method: 'POST',
        url: '/api/pms/products',
        headers: wait,
        payload: product,
      });
      expect(json(res).code).toBe('sku_taken');
    }
    // route_latency: real requests are pooled per route; a slow route is recorded as web processes do.
    for (let i = 0; i < 25; i++) await ctx.request({ method: 'GET', url: '/api/pms/products/AL-1' });
    for (let i = 0; i < 30; i++) ctx.api.latencies.record('GET /api/slow', i < 2 ? 0.05 : 0.4);
    await ctx.api.latencies.flush();
    const latencies = await readRouteLatencies(ctx.api.redis, redisKeys(ctx.config).ops, {
      thresholdMs: 200,
      windowMs: 300_000,
      now: Date.now(),
    });
    expect(latencies.find((l) => l.route === 'GET /api/pms/products/:sku')?.requests).toBeGreaterThanOrEqual(
      25,
    );
    // webhook_endpoint_disabled: an endpoint the breaker turned off.
    const endpoint = json(
      await ctx.request({
        method: 'POST',
        url: '/api/webhooks/endpoints',
        key: ctx.adminKey,
        payload: { url: 'https://hooks.example.com/in', eventTypes: ['product.*'] },
      }),
    );
    await ctx.api
      .db('webhook_endpoints')
      .where({ id: endpoint.id })
      .update({ status: 'disabled', disabled_reason: 'test' });
    // stock_below_safety: a safety stock of 5 with nothing on hand.
    await ctx.request({
      method: 'POST',
      url: '/api/pms/inventory/safety-stock',
      headers: wait,
      payload: { sku: 'AL-1', location: 'default', safetyStock: 5 },
    });

    const first = await evaluate(40);
    expect(names(first.opened)).toEqual([
      'job_failures/products',
      'queue_oldest_waiting/images',
      'route_latency/GET /api/slow',
      'stock_below_safety/AL-1@default',
      `webhook_endpoint_disabled/${endpoint.id}`,
    ]);
    // The backlog must hold for 10 s first.
    expect((await evaluate(45)).opened).toEqual([]);
    expect(names((await evaluate(51)).opened)).toEqual(['queue_backlog/images']);
    expect((await evaluate(52)).opened).toEqual([]);

    // The conditions clear: the queue drains, the endpoint is enabled, stock arrives; the failures
    // leave their one-minute window by t0+70 s, the latencies their five-minute window by t0+360 s.
    await ctx.api.queues.images.drain();
    await ctx.request({
      method: 'POST',
      url: `/api/webhooks/endpoints/${endpoint.id}/enable`,
      key: ctx.adminKey,
    });
    await ctx.request({
      method: 'POST',
      url: '/api/pms/inventory/adjust',
      headers: wait,
      payload: { movements: [{ sku: 'AL-1', location: 'default', delta: 10, reason: 'received' }] },
    });
    // Quiet, but not for the hold-down period yet: all stay open.
    expect(await evaluate(80)).toMatchObject({ opened: [], resolved: [], open: 6 });
    // The backlog flaps back: its open alert stays open, nothing opens twice.
    for (let i = 0; i < 5; i++) {
      await ctx.api.queues.images.add(
        'image.process',
        { payload: {}, meta: { actor: 'test' } },
        { jobId: `images-again-${i}` },
      );
    }
    expect(await evaluate(95)).toMatchObject({ opened: [], resolved: [], open: 6 });
    await ctx.api.queues.images.drain();
    expect(names((await evaluate(115)).resolved)).toEqual([
      'job_failures/products',
      'stock_below_safety/AL-1@default',
      `webhook_endpoint_disabled/${endpoint.id}`,
    ]);
    expect(names((await evaluate(160)).resolved)).toEqual([
      'queue_backlog/images',
      'queue_oldest_waiting/images',
    ]);
    expect(names((await evaluate(430)).resolved)).toEqual(['route_latency/GET /api/slow']);
    expect(await evaluate(600)).toMatchObject({ opened: [], resolved: [], open: 0 });

    const events = await alertEvents();
    expect(events.filter((e) => e.type === 'alert.opened')).toHaveLength(6);
    expect(events.filter((e) => e.type === 'alert.resolved')).toHaveLength(6);
    expect(events[0].data.alert).toMatchObject({ state: 'open', resolvedAt: null });
  });

  it('lists alerts by state (admin only), newest first, with a cursor', async () => {
    const resolved = await ctx.request({
      method: 'GET',
      url: '/api/ops/alerts?state=resolved&limit=4',
      key: ctx.adminKey,
    });
    expect(resolved.statusCode).toBe(200);
    const page = json(resolved);
    expect(page.items).toHaveLength(4);
    expect(page.items.every((a: { state: string }) => a.state === 'resolved')).toBe(true);
    const next = json(
      await ctx.request({
        method: 'GET',
        url: `/api/ops/alerts?state=resolved&cursor=${page.nextCursor}`,
        key: ctx.adminKey,
      }),
    );
    expect(next.items).toHaveLength(2);
    expect(next.nextCursor).toBeNull();
    const open = json(
      await ctx.request({ method: 'GET', url: '/api/ops/alerts?state=open', key: ctx.adminKey }),
    );
    expect(open.items).toEqual([]);
    const bad = await ctx.request({ method: 'GET', url: '/api/ops/alerts?cursor=nope', key: ctx.adminKey });
    expect(bad.statusCode).toBe(400);
    expect((await ctx.request({ method: 'GET', url: '/api/ops/alerts' })).statusCode).toBe(403);
  });

  it('is evaluated by a maintenance job', async () => {
    await ctx.startWorkers(['maintenance']);
    const job = await ctx.api.queues.maintenance.add(
      maintenanceJobs.evaluateAlerts.name,
      { payload: {}, meta: { actor: 'test' } },
      { jobId: 'maintenance-alerts-test' },
    );
    const status = await ctx.waitForJob(job.id!);
    expect(status).toMatchObject({ state: 'completed', result: { skipped: false } });
  });
});
