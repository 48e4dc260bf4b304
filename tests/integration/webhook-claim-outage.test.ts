import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { lockRow, terminateWaiting } from '../helpers/pg-blocking.js';
import { until } from '../helpers/until.js';

/**
 * Postgres away before a delivery's POST is not a failed attempt: the job comes back after
 * JOB_BACKOFF_MS, not at the retry schedule's next step (here 30 s, as in the fault suite, where a
 * Postgres restart just after a receiver's outage held two deliveries back 30 s).
 */

let ctx: TestContext;
let server: http.Server;
let origin: string;
const posts: string[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      posts.push(String(req.headers['webhook-id']));
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // The webhooks worker starts once the delivery is queued and its row held.
  ctx = await createTestContext({
    workers: ['products', 'maintenance'],
    env: {
      WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
      WEBHOOK_RETRY_SCHEDULE: '30s',
      WEBHOOK_RETRY_JITTER: '0',
      WEBHOOK_RELAY_INTERVAL_MS: '100',
      // The claim waits on the test's lock for as long as the test needs, on a loaded machine too.
      DATABASE_WORKER_LOCK_TIMEOUT_MS: '0',
      DATABASE_WORKER_STATEMENT_TIMEOUT_MS: '0',
    },
  });
  const res = await ctx.request({
    method: 'POST',
    url: '/api/webhooks/endpoints',
    key: ctx.adminKey,
    payload: { url: `${origin}/hooks`, eventTypes: ['product.created'] },
  });
  expect(res.statusCode, res.body).toBe(201);
});
afterAll(async () => {
  await ctx?.close();
  server?.closeAllConnections();
  server?.close();
});

it('a claim cut off by Postgres spends no attempt: the first POST follows at once and is attempt 1', async () => {
  const created = await ctx.request({
    method: 'POST',
    url: '/api/pms/products',
    headers: { prefer: 'wait=10' },
    payload: { sku: 'CLAIM-1', name: 'CLAIM-1', price: { amount: 100, currency: 'EUR' } },
  });
  expect(created.statusCode, created.body).toBe(201);
  const event = await ctx.api
    .db('events')
    .where({ aggregate_id: 'CLAIM-1', type: 'product.created' })
    .first();
  const delivery = await until(
    'the delivery queued by the relay',
    () => ctx.api.db('webhook_deliveries').where({ event_id: event.id }).first(),
    (row) => row?.job_id != null,
  );
  const lock = await lockRow(ctx.api.db, 'webhook_deliveries', delivery.id);
  await ctx.startWorkers(['webhooks']);
  // The claim marks the attempt started on the held row: it waits, and is cut off.
  await terminateWaiting(ctx.api.db, lock.pid, [], 'the claim waiting on the row');
  await lock.trx.rollback();

  // Within the 30 s a spent attempt would wait for its retry.
  const job = await ctx.waitForJob(delivery.job_id, 15_000);
  expect(job).toMatchObject({ state: 'completed', result: { outcome: 'delivered', attempt: 1 } });
  expect(posts.filter((id) => id === event.id)).toHaveLength(1);
  const detail = json(
    await ctx.request({ method: 'GET', url: `/api/webhooks/deliveries/${delivery.id}`, key: ctx.adminKey }),
  );
  expect(detail).toMatchObject({ status: 'delivered', attempts: 1 });
});
