import type { Job } from 'bullmq';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { sharedWorkerDeps } from '../../src/api/deps.js';
import type { JobData } from '../../src/queues/job.js';
import { inventoryHandlers } from '../../src/workers/inventory.js';
import { createProducts, createTestContext, json, type TestContext } from '../helpers/context.js';
import { until } from '../helpers/until.js';

/**
 * Group commit (src/workers/group-commit.ts): jobs queued before the workers start are taken
 * together, so they apply in batches. Each job keeps its own outcome; a batch whose transaction
 * is lost is retried job by job.
 */
const contexts: TestContext[] = [];
afterEach(async () => {
  await Promise.all(contexts.splice(0).map((c) => c.close()));
});

async function context(env: Record<string, string>): Promise<TestContext> {
  const ctx = await createTestContext({ workers: ['products'], env: { RATE_LIMIT_PER_SECOND: '0', ...env } });
  contexts.push(ctx);
  await createProducts(ctx, ['A', 'B']);
  return ctx;
}

const submit = async (ctx: TestContext, url: string, payload: Record<string, unknown>) => {
  const res = await ctx.request({ method: 'POST', url, payload });
  expect(res.statusCode, res.body).toBe(202);
  return json(res).id as string;
};
const adjust = (ctx: TestContext, sku: string, delta: number, reference: string) =>
  submit(ctx, '/api/pms/inventory/adjust', {
    movements: [{ sku, location: 'default', delta, reason: delta < 0 ? 'lost' : 'found', reference }],
  });
const reserve = (ctx: TestContext, sku: string, quantity: number, reference: string) =>
  submit(ctx, '/api/pms/inventory/reservations', { reference, lines: [{ sku, quantity }] });

/** Batches committed and rolled back by the in-process workers of these contexts. */
async function batches(ctx: TestContext, outcome: 'committed' | 'retried', queue = 'inventory') {
  const metric = await ctx.api.metrics.batchJobs.get();
  const of = (suffix: string) =>
    metric.values.find(
      (v) => v.metricName?.endsWith(suffix) && v.labels.outcome === outcome && v.labels.queue === queue,
    );
  const sum = of('_sum');
  const count = of('_count');
  return { jobs: sum?.value ?? 0, batches: count?.value ?? 0 };
}

/** A job result without what differs from run to run (ids, times, job ids). */
function comparable(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(comparable);
  if (value === null || typeof value !== 'object') return value;
  const varying = new Set(['id', 'jobId', 'reservationId', 'createdAt', 'updatedAt', 'expiresAt']);
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [k, varying.has(k) ? typeof v : comparable(v)]),
  );
}

/**
 * Successes, insufficient_stock, not_found and a job already applied (its claim is in
 * applied_jobs, as after a crash between commit and acknowledgement), queued together.
 */
async function mixedScenario(ctx: TestContext) {
  await ctx.startWorkers(['inventory']);
  await ctx.waitForJob(await adjust(ctx, 'A', 5, 'stock'));
  await ctx.api.queues.inventory.pause();
  const ids = [
    await adjust(ctx, 'A', 1, 'm-0'),
    await reserve(ctx, 'A', 100, 'm-1'),
    await adjust(ctx, 'NOPE', 1, 'm-2'),
    await reserve(ctx, 'A', 2, 'm-3'),
    await adjust(ctx, 'B', -1, 'm-4'),
    await adjust(ctx, 'A', 7, 'm-5'),
    await reserve(ctx, 'B', 1, 'm-6'),
    await adjust(ctx, 'B', 3, 'm-7'),
    await reserve(ctx, 'A', 4, 'm-8'),
    await adjust(ctx, 'A', -1, 'm-9'),
  ];
  // m-5 was applied before: it answers its stored result and changes nothing.
  await ctx.api
    .db('applied_jobs')
    .insert({ job_id: ids[5], queue: 'inventory', name: 'inventory.adjust', result: { movements: [] } });
  await ctx.api.queues.inventory.resume();
  const outcomes = await Promise.all(ids.map((id) => ctx.waitForJob(id)));
  // Per sku in queue order (batches on other skus may run at once, so skus interleave freely).
  const ledger = await ctx.api.db.raw<{ rows: Record<string, unknown>[] }>(
    `select kind, sku, location, delta, on_hand_after, reserved_after, reference
     from stock_movements where reference like 'm-%' order by sku, id`,
  );
  const levels = await ctx.api.db('inventory_levels').orderBy('sku').select('sku', 'on_hand', 'reserved');
  const claims = await ctx.api.db('applied_jobs').whereIn('job_id', ids).pluck('job_id');
  return {
    outcomes: outcomes.map((o) => ({
      state: o.state,
      code: o.error?.code ?? null,
      attempts: o.attemptsMade,
    })),
    results: outcomes.map((o) => o.result),
    ledger: ledger.rows,
    levels,
    claimed: ids.map((id) => claims.includes(id)),
  };
}

type Scenario = Awaited<ReturnType<typeof mixedScenario>>;

/** The scenario with one transaction per job, one job at a time: what every batched run must equal. */
let oneByOneRun: Promise<Scenario> | undefined;
const oneByOne = () =>
  (oneByOneRun ??= context({ INVENTORY_GROUP_COMMIT: 'false', WORKER_CONCURRENCY_INVENTORY: '1' }).then(
    mixedScenario,
  ));

function expectAsOneByOne(batched: Scenario, alone: Scenario): void {
  expect(batched.outcomes).toEqual(alone.outcomes);
  // The results written set-based have the shape and figures the domain functions answer.
  expect(batched.results.map(comparable)).toEqual(alone.results.map(comparable));
  expect(batched.ledger).toEqual(alone.ledger);
  expect(batched.levels).toEqual(alone.levels);
  expect(batched.claimed).toEqual(alone.claimed);
}

describe('group commit', () => {
  it('gives each job of a mixed batch its own outcome; levels and ledger as if run one by one', async () => {
    const grouped = await context({ INVENTORY_GROUP_COMMIT: 'true', WORKER_CONCURRENCY_INVENTORY: '16' });
    const batched = await mixedScenario(grouped);
    const { jobs, batches: count } = await batches(grouped, 'committed');
    expect(jobs - count, 'some jobs shared a transaction').toBeGreaterThan(0);

    expectAsOneByOne(batched, await oneByOne());

    expect(batched.outcomes).toEqual([
      { state: 'completed', code: null, attempts: 1 },
      { state: 'failed', code: 'insufficient_stock', attempts: 1 },
      { state: 'failed', code: 'not_found', attempts: 1 },
      { state: 'completed', code: null, attempts: 1 },
      { state: 'failed', code: 'insufficient_stock', attempts: 1 },
      { state: 'completed', code: null, attempts: 1 },
      { state: 'failed', code: 'insufficient_stock', attempts: 1 },
      { state: 'completed', code: null, attempts: 1 },
      { state: 'completed', code: null, attempts: 1 },
      { state: 'failed', code: 'insufficient_stock', attempts: 1 },
    ]);
    expect(batched.results[5]).toEqual({ movements: [] });
    expect(batched.results[3]).toMatchObject({ status: 'active', lines: [{ sku: 'A', quantity: 2 }] });
    expect(batched.levels).toEqual([
      { sku: 'A', on_hand: 6, reserved: 6 },
      { sku: 'B', on_hand: 3, reserved: 0 },
    ]);
    // A failed job leaves no claim: it could run again; an applied one keeps its claim.
    expect(batched.claimed).toEqual(batched.outcomes.map((o) => o.state === 'completed'));
  }, 60_000);

  it('with batches in parallel on disjoint skus (INVENTORY_BATCH_PARALLEL=2), the same outcomes and per-sku order', async () => {
    const parallel = await context({
      INVENTORY_GROUP_COMMIT: 'true',
      INVENTORY_BATCH_PARALLEL: '2',
      WORKER_CONCURRENCY_INVENTORY: '16',
    });
    expectAsOneByOne(await mixedScenario(parallel), await oneByOne());
  }, 60_000);

  it('retries every job of a batch whose backend is terminated mid-transaction; each applies once', async () => {
    const ctx = await context({
      INVENTORY_GROUP_COMMIT: 'true',
      WORKER_CONCURRENCY_INVENTORY: '16',
      JOB_BACKOFF_MS: '50',
    });
    await ctx.startWorkers(['inventory']);
    await ctx.waitForJob(await adjust(ctx, 'A', 100, 'stock'));
    // A connection of its own holds level A: the first job blocks on it alone, the next gather behind.
    const holder = new pg.Client({ connectionString: ctx.config.DATABASE_URL });
    await holder.connect();
    const blockedOn = (pattern: string) =>
      until(
        `a backend waiting on a lock in ${pattern}`,
        async () =>
          (
            await ctx.api.db.raw<{ rows: { pid: number }[] }>(
              `select pid from pg_stat_activity
               where datname = current_database() and wait_event_type = 'Lock' and query like ?`,
              [pattern],
            )
          ).rows[0]?.pid,
        (pid) => pid !== undefined,
        10_000,
      );
    try {
      await holder.query('begin');
      await holder.query(`select * from inventory_levels where sku = 'A' for update`);
      const ids = [await adjust(ctx, 'A', 1, 't-0')];
      const solo = await blockedOn('%from inventory_levels where sku = $1%');
      for (let i = 1; i < 10; i++) {
        ids.push(i % 2 ? await adjust(ctx, 'A', 1, `t-${i}`) : await reserve(ctx, 'A', 1, `t-${i}`));
      }
      await until(
        'ten active jobs',
        () => ctx.api.queues.inventory.getActiveCount(),
        (n) => n >= 10,
        10_000,
      );
      // The lone job loses its connection (BullMQ retries it); the batch gathered behind it then
      // blocks on A in its lock step, and loses its connection too.
      await ctx.api.db.raw('select pg_terminate_backend(?)', [solo!]);
      const batch = await blockedOn('%c.priority%');
      await ctx.api.db.raw('select pg_terminate_backend(?)', [batch!]);
      await until(
        'a batch rolled back',
        () => batches(ctx, 'retried'),
        (b) => b.batches >= 1,
        10_000,
      );
      await holder.query('rollback');
      const outcomes = await Promise.all(ids.map((id) => ctx.waitForJob(id)));
      expect(outcomes.map((o) => o.state)).toEqual(ids.map(() => 'completed'));
      const { rows } = await ctx.api.db.raw<{ rows: { job_id: string; n: string }[] }>(
        `select job_id, count(*) as n from stock_movements where reference like 't-%' group by job_id`,
      );
      expect(rows).toHaveLength(10);
      expect(rows.every((r) => Number(r.n) === 1)).toBe(true);
      expect(await ctx.api.db('inventory_levels').where({ sku: 'A' }).first('on_hand', 'reserved')).toEqual({
        on_hand: 106,
        reserved: 4,
      });
      expect((await batches(ctx, 'retried')).jobs).toBeGreaterThanOrEqual(2);
    } finally {
      await holder.end();
    }
  }, 60_000);

  it('applies new orders in batches too (queue orders), each with its own outcome', async () => {
    const ctx = await context({ INVENTORY_GROUP_COMMIT: 'true', WORKER_CONCURRENCY_ORDERS: '16' });
    await ctx.startWorkers(['inventory', 'orders']);
    await ctx.waitForJob(await adjust(ctx, 'A', 5, 'stock'));
    await ctx.api.queues.orders.pause();
    const place = (orderNumber: string, sku: string, quantity: number) =>
      submit(ctx, '/api/pms/orders', {
        orderNumber,
        currency: 'EUR',
        lines: [{ sku, quantity, unitPrice: 100 }],
      });
    const ids = [
      await place('SO-1', 'A', 2),
      await place('SO-2', 'A', 2),
      await place('SO-3', 'A', 2),
      await place('SO-4', 'B', 1),
      await place('SO-5', 'A', 1),
    ];
    await ctx.api.queues.orders.resume();
    const outcomes = await Promise.all(ids.map((id) => ctx.waitForJob(id)));
    expect(outcomes.map((o) => o.error?.code ?? o.state)).toEqual([
      'completed',
      'completed',
      'insufficient_stock',
      'insufficient_stock',
      'completed',
    ]);
    const { jobs, batches: count } = await batches(ctx, 'committed', 'orders');
    expect(jobs - count, 'some orders shared a transaction').toBeGreaterThan(0);
    expect(await ctx.api.db('orders').orderBy('order_number').pluck('order_number')).toEqual([
      'SO-1',
      'SO-2',
      'SO-5',
    ]);
    expect(await ctx.api.db('inventory_levels').where({ sku: 'A' }).first('on_hand', 'reserved')).toEqual({
      on_hand: 5,
      reserved: 5,
    });
    // Each order's rows carry its own job id, though they were written in one transaction.
    const { rows } = await ctx.api.db.raw<{ rows: { order_number: string; job_id: string }[] }>(
      `select o.order_number, h.job_id from orders o join order_history h on h.order_id = o.id order by 1`,
    );
    expect(rows.map((r) => r.job_id)).toEqual([ids[0], ids[1], ids[4]]);
  }, 60_000);

  it('a job given twice while its first run waits (its lock lost, BullMQ hands it out again) applies once, and both runs answer its one result', async () => {
    const ctx = await context({ INVENTORY_GROUP_COMMIT: 'true' });
    const deps = sharedWorkerDeps(ctx.api, { redis: ctx.api.redis });
    const run = (id: string, delta: number) => {
      const job = { id, queueName: 'inventory', name: 'inventory.adjust', attemptsMade: 0 } as Job<JobData>;
      const payload = { movements: [{ sku: 'A', location: 'default', delta, reason: 'found' as const }] };
      return inventoryHandlers['inventory.adjust'](
        { deps, job, meta: { actor: 'test' }, log: ctx.api.log },
        payload,
      );
    };
    // The first job holds sku A in a running batch; both deliveries of the second wait behind it,
    // so they would go out together in the next batch.
    const [, first, again] = await Promise.all([
      run('inventory-twice-0', 1),
      run('inventory-twice-1', 2),
      run('inventory-twice-1', 2),
    ]);
    expect(again).toEqual(first);
    const rows = await ctx.api
      .db('stock_movements')
      .where({ job_id: 'inventory-twice-1' })
      .select('id', 'delta');
    expect(rows).toEqual([{ id: first.movements[0]!.id, delta: 2 }]);
    expect(
      await ctx.api.db('inventory_levels').where({ sku: 'A', location: 'default' }).first('on_hand'),
    ).toEqual({
      on_hand: 3,
    });
  });
});
