import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  createProducts,
  createTestContext,
  exitOf,
  json,
  type TestContext,
  waitForOutput,
} from '../helpers/context.js';
import { until } from '../helpers/until.js';

/**
 * Bounded graceful shutdown, measured (docs/reliability.md): a worker process gets SIGTERM with
 * 100 jobs in flight (queued and active). It exits 0 within SHUTDOWN_TIMEOUT_MS; a worker started
 * after it runs the rest; no job stalled (BullMQ's event stream has no `stalled` entry), none is
 * lost and none applied twice (one ledger row per job).
 */
let ctx: TestContext;
const skus = Array.from({ length: 10 }, (_, i) => `GS-${i}`);

beforeAll(async () => {
  ctx = await createTestContext({ env: { RATE_LIMIT_PER_SECOND: '0' } });
  await ctx.startWorkers(['products']);
  await createProducts(ctx, skus);
});
afterAll(() => ctx.close());

it('stops with 100 jobs in flight: none stalled, lost or applied twice', async () => {
  const first = ctx.spawnWorker(['--queues', 'inventory']);
  await waitForOutput(first, /worker started/);
  const ids: string[] = [];
  for (let i = 0; i < 100; i++) {
    const res = await ctx.request({
      method: 'POST',
      url: '/api/pms/inventory/adjust',
      headers: { 'idempotency-key': `gs-${i}` },
      payload: {
        movements: [{ sku: skus[i % skus.length], location: 'default', delta: 1, reason: 'received' }],
      },
    });
    expect(res.statusCode).toBe(202);
    ids.push(json(res).id);
  }
  await until(
    'jobs active',
    () => ctx.api.queues.inventory.getActiveCount(),
    (n) => n > 0,
    20_000,
    10,
  );
  const stoppedAt = Date.now();
  first.kill('SIGTERM');
  expect(await exitOf(first)).toBe(0);
  expect(Date.now() - stoppedAt).toBeLessThan(Number(ctx.config.SHUTDOWN_TIMEOUT_MS));

  const second = ctx.spawnWorker(['--queues', 'inventory']);
  try {
    await waitForOutput(second, /worker started/);
    const states = await Promise.all(ids.map((id) => ctx.waitForJob(id, 60_000)));
    expect(states.filter((s) => s.state !== 'completed')).toEqual([]);
  } finally {
    second.kill('SIGTERM');
    await exitOf(second);
  }

  const rows = await ctx.api.db('stock_movements').whereIn('job_id', ids).select('job_id');
  expect(rows).toHaveLength(100);
  expect(new Set(rows.map((r) => r.job_id)).size).toBe(100);
  const redis = new Redis(ctx.config.REDIS_URL);
  try {
    const events = (await redis.xrange(`${ctx.config.QUEUE_PREFIX}:inventory:events`, '-', '+')) as [
      string,
      string[],
    ][];
    expect(events.filter(([, fields]) => fields[1] === 'stalled')).toEqual([]);
  } finally {
    redis.disconnect();
  }
}, 120_000);
