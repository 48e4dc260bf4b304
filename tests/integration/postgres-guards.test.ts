import type { Knex } from 'knex';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openPostgres } from '../../src/connections.js';
import type { Db } from '../../src/db/knex.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { type Receiver, startReceiver } from '../helpers/webhook-receiver.js';

/**
 * One stuck transaction must not freeze the feed, the streams or the relay: each role's session
 * guards (statement, lock and idle-in-transaction timeouts) end it within its bound.
 */

let ctx: TestContext;
let receiver: Receiver;
let workerDb: Db;
let stuck: Knex.Transaction | undefined;

beforeAll(async () => {
  receiver = await startReceiver();
  ctx = await createTestContext({
    workers: ['products', 'maintenance', 'webhooks'],
    env: {
      WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
      WEBHOOK_RELAY_INTERVAL_MS: '100',
      DATABASE_API_STATEMENT_TIMEOUT_MS: '1000',
      DATABASE_API_IDLE_IN_TRANSACTION_TIMEOUT_MS: '1000',
      DATABASE_WORKER_IDLE_IN_TRANSACTION_TIMEOUT_MS: '1000',
      DATABASE_WORKER_LOCK_TIMEOUT_MS: '300',
      JOB_ATTEMPTS: '50',
    },
  });
  // A pool as the workers open it: the stuck transaction below is a worker's.
  workerDb = await openPostgres(ctx.config, 'worker');
});
afterAll(async () => {
  await stuck?.rollback().catch(() => undefined);
  await workerDb?.destroy();
  await ctx?.close();
  await receiver?.close();
});

async function createProduct(sku: string): Promise<void> {
  const res = await ctx.request({
    method: 'POST',
    url: '/api/pms/products',
    headers: { prefer: 'wait=10' },
    payload: { sku, name: 'Guarded', price: { amount: 100, currency: 'EUR' } },
  });
  expect(res.statusCode, res.body).toBe(201);
}

it('a worker transaction left open with an event in it is ended; the feed and the relay go on past it', async () => {
  const endpoint = await ctx.request({
    method: 'POST',
    url: '/api/webhooks/endpoints',
    key: ctx.adminKey,
    payload: { url: receiver.url, eventTypes: ['product.*'] },
  });
  expect(endpoint.statusCode).toBe(201);
  receiver.secrets.push(json(endpoint).secret);

  // It drew a seq and then hung (a handler awaiting something that never comes).
  stuck = await workerDb.transaction();
  await stuck.raw(
    `insert into events (type, aggregate_type, aggregate_id, data) values ('product.created', 'product', 'STUCK', '{}')`,
  );
  const started = Date.now();
  await createProduct('AFTER-1');

  let seen: string[] = [];
  for (let i = 0; i < 200 && !seen.includes('AFTER-1'); i++) {
    const page = json(await ctx.request({ method: 'GET', url: '/api/pms/events?limit=100' }));
    seen = page.items.map((e: { aggregate: { id: string } }) => e.aggregate.id);
    if (!seen.includes('AFTER-1')) await new Promise((r) => setTimeout(r, 50));
  }
  expect(seen).toContain('AFTER-1');
  expect(seen).not.toContain('STUCK');
  // Bound: the 1 s idle-in-transaction timeout, plus one horizon proof and a poll.
  expect(Date.now() - started).toBeLessThan(8000);
  const after = await ctx.api.db('events').where({ aggregate_id: 'AFTER-1' }).first();
  await receiver.waitFor((r) => r.processed.has(after.id), 10_000);
  // Its session was ended: a commit now cannot save the event it drew.
  await stuck.commit().catch(() => undefined);
  expect(await ctx.api.db('events').where({ aggregate_id: 'STUCK' })).toHaveLength(0);
});

it('a worker waiting on a lock gives up after its lock_timeout and retries; the job completes once the lock goes', async () => {
  await createProduct('LOCKED-1');
  const holder = await workerDb.transaction();
  await holder('products').where({ sku: 'LOCKED-1' }).forUpdate();
  const res = await ctx.request({
    method: 'PUT',
    url: '/api/pms/products/LOCKED-1',
    headers: { 'if-match': '1' },
    payload: { name: 'Unlocked', price: { amount: 200, currency: 'EUR' } },
  });
  const jobId = json(res).id as string;
  for (let i = 0; i < 200; i++) {
    const job = await ctx.api.queues.products.getJob(jobId);
    if ((job?.attemptsMade ?? 0) >= 2) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  expect((await ctx.api.queues.products.getJob(jobId))?.attemptsMade).toBeGreaterThanOrEqual(2);
  await holder.rollback();
  expect(await ctx.waitForJob(jobId)).toMatchObject({ state: 'completed', result: { name: 'Unlocked' } });
});

it('the API role ends a statement over its statement_timeout and a transaction left idle', async () => {
  const started = Date.now();
  await expect(ctx.api.db.raw('select pg_sleep(10)')).rejects.toMatchObject({ code: '57014' });
  expect(Date.now() - started).toBeLessThan(5000);
  const idle = await ctx.api.db.transaction();
  await idle.raw('select 1');
  await new Promise((r) => setTimeout(r, 1500));
  await expect(idle.raw('select 1')).rejects.toThrow();
  await idle.rollback().catch(() => undefined);
});
