import { afterAll, beforeAll, expect, it } from 'vitest';
import { readyJobs } from '../../src/queues/queues.js';
import { compactPaced } from '../../src/reports/rollups.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { plantMovements, plantProducts } from '../helpers/ledger-plant.js';
import { until } from '../helpers/until.js';

/**
 * Compaction gives way to a backlog of inventory jobs (src/reports/rollups.ts, compactPaced), up to
 * a lag: on real Postgres and a real BullMQ queue whose jobs wait (no inventory worker here).
 */
const maxLagMs = 4000;
let ctx: TestContext;

beforeAll(async () => {
  ctx = await createTestContext({
    env: {
      REPORTS_COMPACT_INTERVAL_MS: '200',
      REPORTS_COMPACT_YIELD_READY: '3',
      REPORTS_COMPACT_MAX_LAG_MS: String(maxLagMs),
    },
  });
  await plantProducts(ctx.api.db, ['PACE-1']);
  // Three inventory jobs ready and no worker to take them: the backlog compaction gives way to.
  for (let i = 0; i < 3; i++) {
    const response = await ctx.request({
      method: 'POST',
      url: '/api/pms/inventory/adjust',
      payload: { movements: [{ sku: 'PACE-1', location: 'default', delta: 1, reason: 'found' }] },
    });
    expect(response.statusCode).toBe(202);
  }
});
afterAll(async () => {
  await ctx?.close();
});

const inventory = () => ctx.api.queues.inventory;
const pending = async () => Number((await ctx.api.db('stock_rollup_pending').count({ n: '*' }))[0]!.n);
const receive = (createdAt = new Date()) =>
  plantMovements(ctx.api.db, [
    { sku: 'PACE-1', location: 'default', kind: 'receipt', delta: 1, unitCost: 100, createdAt },
  ]);
const paced = (yieldAtReady: number, lagMs = 60_000) =>
  compactPaced(ctx.api.db, {
    yieldAtReady,
    maxLagMs: lagMs,
    inventoryReady: () => readyJobs(inventory()),
  });

it('gives way while the inventory queue has yieldAtReady jobs ready, and folds with fewer, with the queue paused, with yieldAtReady 0, and once the oldest pending row is maxLagMs old', async () => {
  expect(await readyJobs(inventory())).toBe(3);
  await receive();
  expect(await paced(3)).toEqual({ movements: 0, skus: 0, rebuilt: 0, skipped: false, deferred: true });
  expect(await pending()).toBe(1);
  expect(await paced(4)).toMatchObject({ movements: 1, deferred: false });
  expect(await pending()).toBe(0);

  await receive();
  await inventory().pause();
  try {
    expect(await readyJobs(inventory())).toBe(0);
    expect(await paced(3)).toMatchObject({ movements: 1, deferred: false });
  } finally {
    await inventory().resume();
  }

  await receive();
  expect(await paced(0)).toMatchObject({ movements: 1, deferred: false });

  // A row pending for longer than the bound is folded whatever the backlog (with the newer ones).
  await receive(new Date(Date.now() - 61_000));
  await receive();
  expect(await paced(3)).toMatchObject({ movements: 2, deferred: false });
  expect(await pending()).toBe(0);
});

it('the scheduled run gives way to the backlog until the row is REPORTS_COMPACT_MAX_LAG_MS old, then folds it', async () => {
  await ctx.startWorkers(['maintenance']);
  const planted = Date.now();
  await receive(new Date(planted));
  await until('the row folded', pending, (n) => n === 0, 30_000);
  // Runs every 200 ms gave way in between: the row waited for the bound, measured on its own stamp.
  expect(Date.now() - planted).toBeGreaterThanOrEqual(maxLagMs);
  expect(await readyJobs(inventory())).toBe(3);
});
