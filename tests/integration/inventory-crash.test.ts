import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createProducts,
  createTestContext,
  exitOf,
  json,
  type TestContext,
  waitForOutput,
} from '../helpers/context.js';

/**
 * Exactly once: a worker process is killed with SIGKILL in the middle of 2,000 queued adjust
 * jobs and started again. Jobs it had committed but not acknowledged run again and must be
 * no-ops; jobs it had in flight must apply once.
 */
let ctx: TestContext;
const skus = ['K0', 'K1', 'K2', 'K3', 'K4'];
const jobs = 2000;

beforeAll(async () => {
  // Short job locks so the restarted worker takes over the killed one's jobs within seconds;
  // no rate limit, since 2,005 requests in a few seconds are above the default burst.
  ctx = await createTestContext({
    workers: ['products'],
    env: { WORKER_LOCK_DURATION_MS: '1500', RATE_LIMIT_PER_SECOND: '0' },
  });
  await createProducts(ctx, skus);
});
afterAll(() => ctx.close());

const count = async (sql: string) => Number((await ctx.api.db.raw(sql)).rows[0].n);

describe('a worker killed mid-run', () => {
  it('applies each of 2,000 adjust jobs exactly once across a kill -9 and a restart', async () => {
    const ids: string[] = [];
    for (let start = 0; start < jobs; start += 200) {
      const batch = await Promise.all(
        Array.from({ length: 200 }, (_, k) =>
          ctx.request({
            method: 'POST',
            url: '/api/pms/inventory/adjust',
            payload: {
              movements: [
                {
                  sku: skus[(start + k) % skus.length],
                  location: 'default',
                  delta: 1,
                  reason: 'found',
                  reference: `n-${start + k}`,
                },
              ],
            },
          }),
        ),
      );
      ids.push(...batch.map((r) => json(r).id as string));
    }
    expect(await ctx.api.queues.inventory.getWaitingCount()).toBe(jobs);

    const first = ctx.spawnWorker(['--queues', 'inventory'], { WORKER_CONCURRENCY_INVENTORY: '16' });
    await waitForOutput(first, /worker started/);
    const deadline = Date.now() + 30_000;
    while ((await count('select count(*) as n from stock_movements')) < 400 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    first.kill('SIGKILL');
    expect(await exitOf(first)).toBeNull();
    const appliedAtKill = await count('select count(*) as n from stock_movements');
    expect(appliedAtKill).toBeGreaterThanOrEqual(400);
    expect(appliedAtKill).toBeLessThan(jobs);
    const activeAtKill = await ctx.api.queues.inventory.getActiveCount();

    const second = ctx.spawnWorker(['--queues', 'inventory'], { WORKER_CONCURRENCY_INVENTORY: '16' });
    const outcomes = await Promise.all(ids.map((id) => ctx.waitForJob(id, 90_000)));
    second.kill('SIGTERM');
    await exitOf(second);

    expect(outcomes.filter((o) => o.state !== 'completed')).toEqual([]);
    expect(await count('select count(*) as n from stock_movements')).toBe(jobs);
    expect(await count('select count(distinct job_id) as n from stock_movements')).toBe(jobs);
    expect(
      await count(
        `select count(*) as n from stock_movements where job_id <> all(array[${ids.map((i) => `'${i}'`).join(',')}])`,
      ),
    ).toBe(0);
    expect(await count(`select count(*) as n from applied_jobs where name = 'inventory.adjust'`)).toBe(jobs);
    expect(await count(`select count(*) as n from events where type = 'stock.moved'`)).toBe(jobs);
    const levels = await ctx.api.db('inventory_levels').whereIn('sku', skus).orderBy('sku').pluck('on_hand');
    expect(levels).toEqual(skus.map(() => jobs / skus.length));
    // The jobs the killed worker had in flight ran again on the new one.
    console.log(`killed after ${appliedAtKill} movements with ${activeAtKill} job(s) active`);
  }, 150_000);
});
