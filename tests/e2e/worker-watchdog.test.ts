import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTcpProxy, type TcpProxy } from '../../scripts/faults/tcp-proxy.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { until } from '../helpers/until.js';

/**
 * The worker watchdog: the link to Redis stalls (a proxy stops forwarding, as a frozen network
 * path does: no error, no answer). BullMQ abandons its blocking wait and reconnects, and the new
 * connection never gets ready; once that has lasted WORKER_WATCHDOG_MS the worker is closed and
 * recreated (stockflow_worker_recreated_total), and the new one takes jobs when the link is back.
 */
let proxy: TcpProxy;
let ctx: TestContext;

beforeAll(async () => {
  const redis = new URL(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379');
  proxy = await startTcpProxy(Number(redis.port || 6379));
  ctx = await createTestContext({
    env: { REDIS_URL: `redis://127.0.0.1:${proxy.port}`, WORKER_WATCHDOG_MS: '1000' },
  });
  await ctx.startWorkers(['products']);
});

afterAll(async () => {
  proxy?.thaw();
  await ctx?.close();
  await proxy?.close();
});

const recreated = async () =>
  (await ctx.api.metrics.workerRecreated.get()).values.find(
    (v) => v.labels.queue === 'products' && v.labels.reason === 'blocking_connection_not_ready',
  )?.value ?? 0;

const create = (sku: string) =>
  ctx.request({
    method: 'POST',
    url: '/api/pms/products',
    headers: { prefer: 'wait=5', 'idempotency-key': sku },
    payload: { sku, name: sku, price: { amount: 100, currency: 'EUR' } },
  });

it('recreates a worker whose blocking connection stays down, and the new one works', async () => {
  expect((await create('W-1')).statusCode).toBe(201);
  expect(await recreated()).toBe(0);

  proxy.freeze();
  await until('the watchdog recreated the worker', recreated, (n) => n >= 1, 30_000, 200);
  proxy.thaw();

  const res = await until(
    'a job after the stall',
    () => create('W-2'),
    (r) => r.statusCode === 201,
    30_000,
    200,
  );
  expect(res.statusCode).toBe(201);
}, 90_000);
