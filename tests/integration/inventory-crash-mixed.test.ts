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
 * Exactly once with group commit on: a worker process applying batches of 2,000 mixed jobs
 * (reservations, adjusts up and down, insufficient_stock and not_found failures) is killed with
 * SIGKILL and started again. Every job applies once or fails with its rule; nothing applies twice.
 */
let ctx: TestContext;
const skus = ['M0', 'M1', 'M2', 'M3', 'M4'];
const jobs = 2000;
const workerEnv = { WORKER_CONCURRENCY_INVENTORY: '64', INVENTORY_GROUP_COMMIT: 'true' };

beforeAll(async () => {
  ctx = await createTestContext({
    workers: ['products'],
    env: { WORKER_LOCK_DURATION_MS: '1500', RATE_LIMIT_PER_SECOND: '0', INVENTORY_GROUP_COMMIT: 'true' },
  });
  await createProducts(ctx, skus);
});
afterAll(() => ctx.close());

const count = async (sql: string) => Number((await ctx.api.db.raw(sql)).rows[0].n);

/** Job n: what it asks and how it must end. */
function jobOf(n: number): { path: string; payload: Record<string, unknown>; fails?: string } {
  const sku = skus[n % skus.length]!;
  const reference = `c-${n}`;
  const adjust = (s: string, delta: number) => ({
    path: '/api/pms/inventory/adjust',
    payload: {
      movements: [{ sku: s, location: 'default', delta, reason: delta < 0 ? 'lost' : 'found', reference }],
    },
  });
  const reserve = (quantity: number) => ({
    path: '/api/pms/inventory/reservations',
    payload: { reference, lines: [{ sku, quantity }] },
  });
  switch (n % 4) {
    case 0:
      return reserve(1);
    case 1:
      return adjust(sku, 1);
    case 2:
      return adjust(sku, -1);
    default:
      return n % 20 === 3
        ? { ...adjust('NOPE', 1), fails: 'not_found' }
        : { ...reserve(100_000), fails: 'insufficient_stock' };
  }
}

describe('a group-commit worker killed mid-run', () => {
  it('applies each of 2,000 mixed jobs exactly once across a kill -9 and a restart', async () => {
    const first = ctx.spawnWorker(['--queues', 'inventory'], workerEnv);
    await waitForOutput(first, /worker started/);
    for (const sku of skus) {
      const stocked = await ctx.request({
        method: 'POST',
        url: '/api/pms/inventory/adjust',
        headers: { prefer: 'wait=10' },
        payload: { movements: [{ sku, location: 'default', delta: 1000, reason: 'received' }] },
      });
      expect(stocked.statusCode, stocked.body).toBe(200);
    }
    // Queued while paused, so the worker finds them all waiting (batches from the start).
    await ctx.api.queues.inventory.pause();
    const specs = Array.from({ length: jobs }, (_, n) => jobOf(n));
    const ids: string[] = [];
    for (let start = 0; start < jobs; start += 200) {
      const batch = await Promise.all(
        specs
          .slice(start, start + 200)
          .map((s) => ctx.request({ method: 'POST', url: s.path, payload: s.payload })),
      );
      expect(batch.every((r) => r.statusCode === 202)).toBe(true);
      ids.push(...batch.map((r) => json(r).id as string));
    }
    const moved = () => count(`select count(*) as n from stock_movements where reference like 'c-%'`);
    await ctx.api.queues.inventory.resume();
    const deadline = Date.now() + 30_000;
    while ((await moved()) < 500 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    first.kill('SIGKILL');
    expect(await exitOf(first)).toBeNull();
    const appliedAtKill = await moved();
    expect(appliedAtKill).toBeGreaterThanOrEqual(500);
    expect(appliedAtKill).toBeLessThan(1500);
    const activeAtKill = await ctx.api.queues.inventory.getActiveCount();

    const second = ctx.spawnWorker(['--queues', 'inventory'], workerEnv);
    const outcomes = await Promise.all(ids.map((id) => ctx.waitForJob(id, 120_000)));
    second.kill('SIGTERM');
    await exitOf(second);

    const wrong = outcomes.flatMap((o, n) => {
      const want = specs[n]!.fails;
      const ok = want ? o.state === 'failed' && o.error?.code === want : o.state === 'completed';
      return ok ? [] : [{ n, state: o.state, error: o.error }];
    });
    expect(wrong).toEqual([]);
    const succeeded = ids.filter((_, n) => !specs[n]!.fails);
    expect(succeeded).toHaveLength(1500);
    expect(await moved()).toBe(1500);
    expect(
      await count(`select count(distinct job_id) as n from stock_movements where reference like 'c-%'`),
    ).toBe(1500);
    const list = (xs: string[]) => `array[${xs.map((i) => `'${i}'`).join(',')}]`;
    expect(
      await count(
        `select count(*) as n from stock_movements where reference like 'c-%' and job_id <> all(${list(succeeded)})`,
      ),
    ).toBe(0);
    expect(await count(`select count(*) as n from applied_jobs where job_id = any(${list(ids)})`)).toBe(1500);
    expect(await count(`select count(*) as n from reservations where reference like 'c-%'`)).toBe(500);
    expect(await count(`select count(*) as n from events where type = 'reservation.created'`)).toBe(500);
    const levels = await ctx.api
      .db('inventory_levels')
      .whereIn('sku', skus)
      .orderBy('sku')
      .select('on_hand', 'reserved');
    expect(levels).toEqual(skus.map(() => ({ on_hand: 1000, reserved: 100 })));
    console.log(`killed after ${appliedAtKill} movements with ${activeAtKill} job(s) active`);
  }, 180_000);
});
