import { BentoCache, bentostore } from 'bentocache';
import { redisBusDriver, redisDriver } from 'bentocache/drivers/redis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createStamps, isCurrent } from '../../src/cache/stamps.js';
import { createRedis } from '../../src/connections.js';
import { maintenanceJobs } from '../../src/queues/maintenance.js';
import { redisKeys, stampKeys } from '../../src/redis-keys.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { keysMatching } from '../helpers/scratch-redis.js';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext({ workers: ['products', 'inventory'] });
});
afterAll(() => ctx.close());

const wait = { prefer: 'wait=10' };
const shirt = (sku: string, name = 'T-shirt') => ({ sku, name, price: { amount: 1999, currency: 'EUR' } });

async function createProduct(sku: string): Promise<void> {
  const res = await ctx.request({
    method: 'POST',
    url: '/api/pms/products',
    headers: wait,
    payload: shirt(sku),
  });
  expect(res.statusCode).toBe(201);
}

async function updateName(sku: string, version: number, name: string): Promise<number> {
  const res = await ctx.request({
    method: 'PUT',
    url: `/api/pms/products/${sku}`,
    headers: { ...wait, 'if-match': `"${version}"` },
    payload: { name, price: { amount: 1999, currency: 'EUR' } },
  });
  expect(res.statusCode).toBe(200);
  return json(res).version;
}

const counts = () => structuredClone(ctx.api.cache.counts());
const read = (url: string) => ctx.request({ method: 'GET', url });

describe('read cache', () => {
  it('loads 100 concurrent misses on one key once', async () => {
    await createProduct('RC-STAMPEDE');
    const before = counts();
    const responses = await Promise.all(
      Array.from({ length: 100 }, () => read('/api/pms/products/RC-STAMPEDE')),
    );
    expect(responses.every((r) => r.statusCode === 200 && json(r).sku === 'RC-STAMPEDE')).toBe(true);
    const after = counts();
    expect(after.product.loads - before.product.loads).toBe(1);
    expect(after.product.misses - before.product.misses).toBe(1);
    expect(after.product.hits - before.product.hits).toBe(99);
  });

  it('counts hits, misses and loads per cache, in /api/ops/cache and /metrics', async () => {
    await createProduct('RC-COUNT');
    const before = counts();
    await read('/api/pms/products/RC-COUNT'); // miss
    await read('/api/pms/products/RC-COUNT'); // hit
    await read('/api/pms/products/RC-COUNT'); // hit
    await read('/api/pms/inventory/status?sku=RC-COUNT'); // miss
    await read('/api/pms/inventory/status?sku=RC-COUNT&location=default'); // hit (same entry, narrowed)
    await read('/api/pms/products?limit=5'); // miss
    await read('/api/pms/products?limit=5'); // hit
    const res = await ctx.request({ method: 'GET', url: '/api/ops/cache', key: ctx.adminKey });
    expect(res.statusCode).toBe(200);
    const body = json(res);
    const delta = (cache: 'product' | 'stock' | 'product_list', field: 'hits' | 'misses' | 'loads') =>
      body.caches[cache][field] - before[cache][field];
    expect([delta('product', 'misses'), delta('product', 'hits'), delta('product', 'loads')]).toEqual([
      1, 2, 1,
    ]);
    expect([delta('stock', 'misses'), delta('stock', 'hits'), delta('stock', 'loads')]).toEqual([1, 1, 1]);
    expect([delta('product_list', 'misses'), delta('product_list', 'hits')]).toEqual([1, 1]);
    expect(body.caches.product.hitRatio).toBeGreaterThan(0);
    expect(body.enabled).toBe(true);
    expect(body.topReads.map((r: { sku: string }) => r.sku)).toContain('RC-COUNT');

    const pms = await ctx.request({ method: 'GET', url: '/api/ops/cache' });
    expect(pms.statusCode).toBe(403);

    const metrics = (await ctx.request({ method: 'GET', url: '/metrics', key: ctx.adminKey })).body;
    const hits = Number(/^stockflow_cache_hits_total\{cache="product"\} (\d+)$/m.exec(metrics)?.[1]);
    expect(hits).toBe(ctx.api.cache.counts().product.hits);
    expect(metrics).toMatch(/^stockflow_cache_hit_ratio\{cache="stock"\} /m);
  });

  it('shows a completed job at once: by key for the sku, by tag for list pages, stock by sku', async () => {
    await createProduct('RC-FRESH');
    await read('/api/pms/products/RC-FRESH');
    await read('/api/pms/products?q=RC-FRESH');
    await read('/api/pms/inventory/status?sku=RC-FRESH');
    const version = await updateName('RC-FRESH', 1, 'Renamed');
    expect(json(await read('/api/pms/products/RC-FRESH'))).toMatchObject({ version, name: 'Renamed' });
    expect(json(await read('/api/pms/products?q=RC-FRESH')).items[0]).toMatchObject({ name: 'Renamed' });

    const adjust = await ctx.request({
      method: 'POST',
      url: '/api/pms/inventory/adjust',
      headers: wait,
      payload: { movements: [{ sku: 'RC-FRESH', location: 'default', delta: 7, reason: 'received' }] },
    });
    expect(adjust.statusCode).toBe(200);
    const status = json(await read('/api/pms/inventory/status?sku=RC-FRESH'));
    expect(status.items[0].totals.onHand).toBe(7);
    // A sku unknown at first is not cached as not found: it is found once its product exists.
    expect(json(await read('/api/pms/inventory/status?sku=RC-LATER')).notFound).toEqual(['RC-LATER']);
    await createProduct('RC-LATER');
    expect(json(await read('/api/pms/inventory/status?sku=RC-LATER')).notFound).toEqual([]);
  });

  it('neither caches nor counts reads of skus that do not exist', async () => {
    const ghosts = Array.from({ length: 20 }, (_, i) => `RC-GHOST-${i}`);
    const before = counts();
    for (let round = 0; round < 3; round++) {
      for (const sku of ghosts) {
        expect((await read(`/api/pms/products/${sku}`)).statusCode).toBe(404);
        expect(json(await read(`/api/pms/inventory/status?sku=${sku}`)).notFound).toEqual([sku]);
      }
    }
    // Every read went to Postgres: nothing was stored to serve the next one (L1 or Redis).
    const after = counts();
    expect(after.product.loads - before.product.loads).toBe(60);
    expect(after.product.hits - before.product.hits).toBe(0);
    expect(after.stock.hits - before.stock.hits).toBe(0);
    expect(await keysMatching(ctx.api.redis, `${redisKeys(ctx.config).cache}*RC-GHOST*`)).toEqual([]);
    // …and none of them is a top read for warming to load.
    const top = await ctx.api.cache.topReads(1000);
    expect(top.filter((r) => r.sku.startsWith('RC-GHOST'))).toEqual([]);
  });

  it('never serves an entry a slow reader loaded before a commit and stored after its invalidation', async () => {
    await createProduct('RC-RACE');
    const stamps = createStamps(ctx.api.redis, redisKeys(ctx.config).cache);
    // The slow reader: takes its stamp and loads the old row…
    const stamp = await stamps.read(['product:RC-RACE']);
    const oldRow = json(await read('/api/pms/products/RC-RACE'));
    // …the job commits and invalidates, and completes…
    const version = await updateName('RC-RACE', 1, 'After the commit');
    expect(isCurrent(stamp, await stamps.read(['product:RC-RACE']))).toBe(false);
    // …then the slow reader stores what it loaded, as bentocache would on another process (L2 + bus).
    const connection = createRedis(ctx.config, 'cache-bus');
    const other = new BentoCache({
      default: 'reads',
      prefix: redisKeys(ctx.config).cache,
      stores: {
        reads: bentostore().useL2Layer(redisDriver({ connection })).useBus(redisBusDriver({ connection })),
      },
    });
    await other.set({
      key: 'product:RC-RACE',
      value: { stamp, loadedAt: Date.now(), value: oldRow },
      ttl: 60_000,
    });
    const before = counts();
    const seen = json(await read('/api/pms/products/RC-RACE'));
    expect(seen).toMatchObject({ version, name: 'After the commit' });
    expect(counts().product.invalidatedOnRead - before.product.invalidatedOnRead).toBeGreaterThanOrEqual(1);
    await other.disconnectAll();
    connection.disconnect();
  });

  it('retires every stamp when the generations are lost (the queue Redis was flushed)', async () => {
    const stamps = createStamps(ctx.api.redis, redisKeys(ctx.config).cache);
    const before = await stamps.read(['product:X', 'stock:X']);
    await stamps.bump(['stock:X']);
    const bumped = await stamps.read(['product:X', 'stock:X']);
    expect(isCurrent(before, bumped)).toBe(false);
    expect(isCurrent(bumped, bumped)).toBe(true);
    // One DEL: on a cluster too, the epoch and the generations share a slot.
    await ctx.api.redis.del(...stampKeys(redisKeys(ctx.config).cache, ['stock:X']));
    expect(isCurrent(bumped, await stamps.read(['product:X', 'stock:X']))).toBe(false);
  });

  it('sends invalidations made together (a batch of jobs completing) as one bump that carries every change', async () => {
    const stamps = createStamps(ctx.api.redis, redisKeys(ctx.config).cache);
    const dependencies = ['product:RC-C1', 'stock:RC-C1', 'stock:RC-C2', 'stock:RC-C3'];
    const before = await stamps.read(dependencies);
    // Counts the calls and passes them on to Redis.
    const scripts = ctx.api.redis as unknown as {
      stockflowStampBump: (...args: unknown[]) => Promise<number>;
    };
    const bump = vi.spyOn(scripts, 'stockflowStampBump');
    try {
      await Promise.all([
        ctx.api.cache.invalidate({ products: ['RC-C1'], stock: ['RC-C1'] }),
        ctx.api.cache.invalidate({ stock: ['RC-C2'] }),
        ctx.api.cache.invalidate({ stock: ['RC-C2', 'RC-C3'] }),
      ]);
      expect(bump).toHaveBeenCalledTimes(1);
    } finally {
      bump.mockRestore();
    }
    const after = await stamps.read(dependencies);
    for (const [i, gen] of after.gens.entries()) expect(gen).toBeGreaterThan(before.gens[i]!);
    // A later invalidation is a round of its own: it is not answered by one that went before it.
    const again = await stamps.read(['stock:RC-C3']);
    await ctx.api.cache.invalidate({ stock: ['RC-C3'] });
    expect((await stamps.read(['stock:RC-C3'])).gens[0]).toBeGreaterThan(again.gens[0]!);
  });

  it('warms the most-read skus from their read counts; a worker start enqueues a warm run', async () => {
    for (const sku of ['RC-W1', 'RC-W2', 'RC-W3']) await createProduct(sku);
    // More reads than any sku of the tests above (the stampede read one 100 times).
    await Promise.all(Array.from({ length: 150 }, () => read('/api/pms/products/RC-W1')));
    await Promise.all(Array.from({ length: 120 }, () => read('/api/pms/inventory/status?sku=RC-W2')));
    await read('/api/pms/products/RC-W3');
    const top = await ctx.api.cache.topReads(3);
    expect(top.slice(0, 2)).toEqual([
      { sku: 'RC-W1', reads: 150 },
      { sku: 'RC-W2', reads: 120 },
    ]);

    // A worker start warms at once (and the scheduler goes on): let that run finish first.
    await ctx.startWorkers(['maintenance']);
    const atStart = (await ctx.api.queues.maintenance.getJobs(['wait', 'active', 'completed'])).find(
      (j) => j.name === maintenanceJobs.warmCache.name,
    );
    expect(atStart).toBeDefined();
    await vi.waitFor(async () => expect(await atStart!.getState()).toBe('completed'), { timeout: 15_000 });
    // Drop them from the cache, then warm the top two through the scheduled job's handler.
    await ctx.api.cache.invalidate({
      products: ['RC-W1', 'RC-W2', 'RC-W3'],
      stock: ['RC-W1', 'RC-W2', 'RC-W3'],
    });
    const job = await ctx.api.queues.maintenance.add(
      maintenanceJobs.warmCache.name,
      { payload: { top: 2 }, meta: { actor: 'test' } },
      { jobId: 'maintenance-warm-test' },
    );
    const status = await ctx.waitForJob(job.id!);
    expect(status.state).toBe('completed');
    expect(status.result).toMatchObject({ skus: 2 });
    const before = counts();
    await read('/api/pms/products/RC-W1');
    await read('/api/pms/products/RC-W2');
    await read('/api/pms/inventory/status?sku=RC-W1,RC-W2');
    const warmed = counts();
    expect(warmed.product.loads - before.product.loads).toBe(0);
    expect(warmed.stock.loads - before.stock.loads).toBe(0);
    expect(warmed.product.hits - before.product.hits).toBe(2);
    await read('/api/pms/products/RC-W3');
    expect(counts().product.loads - warmed.product.loads).toBe(1);
    // Warming halved the counts, so old favourites fade.
    const after = await ctx.api.cache.topReads(1);
    expect(after[0]!.reads).toBeLessThan(top[0]!.reads);
    // Warming is not reading: it halves the counts and adds none of its own.
    const counted = await ctx.api.cache.topReads(2);
    await ctx.api.cache.invalidate({ products: ['RC-W1'], stock: [] });
    const beforeWarm = counts();
    expect(await ctx.api.cache.warm(2)).toMatchObject({ skus: 2, loads: 1 });
    expect(await ctx.api.cache.topReads(2)).toEqual(counted.map((r) => ({ ...r, reads: r.reads / 2 })));
    // …and its lookups are neither hits nor misses: the hit ratio is the readers'.
    const afterWarm = counts();
    for (const cache of ['product', 'stock'] as const) {
      expect(afterWarm[cache].hits).toBe(beforeWarm[cache].hits);
      expect(afterWarm[cache].misses).toBe(beforeWarm[cache].misses);
    }
    expect(afterWarm.product.loads - beforeWarm.product.loads).toBe(1);
  });
});
