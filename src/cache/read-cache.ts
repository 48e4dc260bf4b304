import { createHash } from 'node:crypto';
import { BentoCache, bentostore } from 'bentocache';
import { memoryDriver } from 'bentocache/drivers/memory';
import { redisBusDriver, redisDriver } from 'bentocache/drivers/redis';
import DataLoader from 'dataloader';
import type { Knex } from 'knex';
import type { Config } from '../config.js';
import { createRedis, type RedisClient } from '../connections.js';
import { atLocation, getStockStatus } from '../domain/levels.js';
import { getProduct, listProducts, type ProductPage } from '../domain/products.js';
import type { Logger } from '../log.js';
import { redisKeys } from '../redis-keys.js';
import type { StockStatus } from '../schemas/inventory.js';
import type { Product } from '../schemas/products.js';
import { createReadCounts } from './read-counts.js';
import { createStamps, isCurrent, type Stamp } from './stamps.js';

/**
 * The read cache of products, list pages and stock status: bentocache with an in-process tier
 * (bounded, least recently used first) over Redis, the tiers of all processes kept in sync over
 * Redis pub/sub, per-key stampede protection (concurrent misses on a key load once) and grace
 * (an expired entry is served while one reader reloads it). Read-your-writes comes from the
 * stamps (./stamps.ts): an entry is only served while no job has changed what it was loaded from.
 */

export const cacheNames = ['product', 'product_list', 'stock'] as const;
export type CacheName = (typeof cacheNames)[number];

/** What a committed job changed, as the cache sees it. */
export interface CacheChanges {
  products?: readonly string[];
  stock?: readonly string[];
  productLists?: boolean;
  locations?: boolean;
}

export interface CacheCounts {
  /** Served from the cache, fresh. */
  hits: number;
  /** Loaded from Postgres for this read. */
  misses: number;
  /** Served after its TTL (within grace) while a reload ran in the background. */
  staleServes: number;
  /** Loads from Postgres, background reloads and warming included (hits and misses are readers' only). */
  loads: number;
  /** Entries found but refused because a job had changed their data since they were loaded. */
  invalidatedOnRead: number;
  /** Reads that skipped the cache because its generations could not be read (Redis unreachable). */
  bypassed: number;
}

export interface ReadCache {
  readonly enabled: boolean;
  product(sku: string): Promise<Product | undefined>;
  products(query: Parameters<typeof listProducts>[1]): Promise<ProductPage>;
  stockStatus(skus: string[], location?: string): Promise<{ items: StockStatus[]; notFound: string[] }>;
  /** After commit, before the job completes: readers from then on see the change on every process. */
  invalidate(changes: CacheChanges): Promise<void>;
  /** Loads the most-read skus that are not cached; halves the read counts so old favourites fade. */
  warm(top: number): Promise<{ skus: number; loads: number }>;
  counts(): Record<CacheName, CacheCounts>;
  topReads(limit: number): Promise<{ sku: string; reads: number }[]>;
  close(): Promise<void>;
}

interface Entry<T> {
  stamp: Stamp;
  loadedAt: number;
  value: T;
}

const emptyCounts = (): CacheCounts => ({
  hits: 0,
  misses: 0,
  staleServes: 0,
  loads: 0,
  invalidatedOnRead: 0,
  bypassed: 0,
});

/** Tries an entry this many times before the read goes to Postgres without the cache. */
const maxAttempts = 3;

export async function openReadCache(deps: {
  config: Config;
  log: Logger;
  db: Knex;
  /** Queue Redis (noeviction): the generations live here. */
  redis: RedisClient;
}): Promise<ReadCache> {
  const { config, db } = deps;
  const log = deps.log.child({ component: 'read-cache' });
  const counts = Object.fromEntries(cacheNames.map((n) => [n, emptyCounts()])) as Record<
    CacheName,
    CacheCounts
  >;
  if (!config.CACHE_ENABLED) return disabledCache(db, counts);

  const prefix = redisKeys(config).cache;
  // Reads must not hang on a cache Redis that is away: fail fast and load from Postgres instead.
  const cacheRedis = createRedis(config, 'cache');
  await cacheRedis.connect().catch((error: unknown) => {
    log.warn({ err: error }, 'cache Redis is not reachable; reads go to Postgres until it is');
  });
  // The bus subscribes at once and must queue until connected: its connections retry forever.
  // It opens its two connections with `duplicate()`, which copies options but not listeners: made
  // by createRedis they get the error listener too (ioredis prints every error of a connection
  // without one as an "Unhandled error event" while Redis is away). `busBase` never connects.
  const busBase = createRedis(config, 'cache-bus');
  (busBase as { duplicate: () => RedisClient }).duplicate = () => createRedis(config, 'cache-bus');
  const bento = new BentoCache({
    default: 'reads',
    prefix,
    stores: {
      reads: bentostore()
        .useL1Layer(memoryDriver({ maxItems: config.CACHE_L1_MAX_ITEMS, maxSize: config.CACHE_L1_MAX_BYTES }))
        .useL2Layer(redisDriver({ connection: cacheRedis }))
        .useBus(redisBusDriver({ connection: busBase })),
    },
    // A cache Redis outage degrades to Postgres reads; it never fails a request.
    suppressL2Errors: true,
  });
  const store = bento.use('reads');
  const stamps = createStamps(deps.redis, prefix);
  const readCounts = createReadCounts(cacheRedis, `${prefix}:reads`, log);
  const stockLoader = new DataLoader<string, StockStatus | null>(
    async (skus) => {
      const { items } = await getStockStatus(db, [...skus]);
      const bySku = new Map(items.map((item) => [item.sku, item]));
      return skus.map((sku) => bySku.get(sku) ?? null);
    },
    { cache: false, maxBatchSize: 100 },
  );
  /**
   * The jobs of one group-commit batch complete together: their invalidations, made in the same
   * tick, go as one bump and one delete (a caller waits for the round that carries its changes).
   */
  const invalidations = new DataLoader<CacheChanges, void>(
    async (batch) => {
      await invalidateNow(mergeChanges(batch));
      return batch.map(() => undefined);
    },
    // At most one default group-commit batch per round, so one bump script stays a few thousand keys.
    { cache: false, maxBatchSize: 64 },
  );
  async function invalidateNow(changes: CacheChanges): Promise<void> {
    const products = changes.products ?? [];
    const stock = changes.stock ?? [];
    const dependencies = [
      ...products.map((sku) => `product:${sku}`),
      ...stock.map((sku) => `stock:${sku}`),
      ...(changes.productLists ? ['product-lists'] : []),
      ...(changes.locations ? ['locations'] : []),
    ];
    if (dependencies.length === 0) return;
    // This is what readers check: it must succeed (or the job fails and is retried, a no-op).
    await stamps.bump(dependencies);
    // Freeing the stale entries everywhere is housekeeping: a lost delete costs a reload.
    const tags = [
      ...(changes.productLists ? ['product-lists'] : []),
      ...(changes.locations ? ['locations'] : []),
    ];
    const keys = [...products.map((sku) => `product:${sku}`), ...stock.map((sku) => `stock:${sku}`)];
    try {
      if (keys.length > 0) await store.deleteMany({ keys });
      if (tags.length > 0) await store.deleteByTag({ tags });
    } catch (error) {
      log.warn({ err: error }, 'could not delete stale cache entries; readers reload them');
    }
  }
  const ttlOf: Record<CacheName, number> = {
    product: config.CACHE_TTL,
    product_list: config.CACHE_LIST_TTL,
    stock: config.CACHE_TTL,
  };

  /** One key: served while its stamp is current, else reloaded (at most `maxAttempts` tries). */
  async function lookup<T>(
    cache: CacheName,
    key: string,
    stamp: Stamp,
    load: () => Promise<T>,
    options: { tags?: string[]; reading?: boolean } = {},
  ): Promise<T> {
    const { tags, reading = true } = options;
    // Warming (reading false) loads like a miss but counts no hit or miss: the ratio is readers'.
    const tally = (field: 'hits' | 'misses' | 'staleServes' | 'invalidatedOnRead') => {
      if (reading) counts[cache][field]++;
    };
    const ttl = ttlOf[cache];
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      let loaded: Entry<T> | undefined;
      // Undefined when the factory skipped caching (the value does not exist).
      const entry = await store.getOrSet<Entry<T> | undefined>({
        key,
        ttl,
        grace: config.CACHE_GRACE > 0 ? ttl + config.CACHE_GRACE : false,
        tags,
        forceFresh: attempt > 0,
        // A load is fresh by its stamp: other processes need no word of it (their older copies fail
        // the stamp check). The bus carries the invalidations (deletes) only, not every miss.
        skipBusNotify: true,
        factory: async (factory) => {
          counts[cache].loads++;
          loaded = { stamp, loadedAt: Date.now(), value: await load() };
          // Only what exists is cached: reads of skus that do not exist cannot fill the cache.
          return loaded.value === null ? factory.skip() : loaded;
        },
      });
      // Set by the factory when this reader loaded (TypeScript does not follow the closure).
      const mine = loaded as Entry<T> | undefined;
      if (mine && (entry === mine || entry === undefined)) {
        tally('misses');
        return mine.value;
      }
      if (entry === undefined) break;
      if (isCurrent(entry.stamp, stamp)) {
        tally(Date.now() - entry.loadedAt >= ttl ? 'staleServes' : 'hits');
        return entry.value;
      }
      tally('invalidatedOnRead');
    }
    tally('misses');
    return load();
  }

  async function currentStamp(cache: CacheName, dependencies: string[]): Promise<Stamp | undefined> {
    try {
      return await stamps.read(dependencies);
    } catch (error) {
      counts[cache].bypassed++;
      log.debug({ err: error }, 'cache generations unreadable; reading from Postgres');
      return undefined;
    }
  }

  // Reads are counted (for warming) only for skus that exist.
  async function product(sku: string, count = true): Promise<Product | undefined> {
    const stamp = await currentStamp('product', [`product:${sku}`]);
    const value = stamp
      ? await lookup('product', `product:${sku}`, stamp, async () => (await getProduct(db, sku)) ?? null, {
          reading: count,
        })
      : await getProduct(db, sku);
    if (value && count) readCounts.record(sku);
    return value ?? undefined;
  }

  async function statusOf(skus: string[], count: boolean): Promise<Map<string, StockStatus | null>> {
    const unique = [...new Set(skus)];
    const found = await loadStatuses(unique, count);
    if (count) for (const [sku, status] of found) if (status) readCounts.record(sku);
    return found;
  }

  async function loadStatuses(unique: string[], count: boolean): Promise<Map<string, StockStatus | null>> {
    const stamp = await currentStamp('stock', ['locations', ...unique.map((sku) => `stock:${sku}`)]);
    if (!stamp) {
      const { items } = await getStockStatus(db, unique);
      return new Map(items.map((item) => [item.sku, item]));
    }
    const [locationsGen, ...skuGens] = stamp.gens;
    const values = await Promise.all(
      unique.map((sku, i) =>
        lookup(
          'stock',
          `stock:${sku}`,
          { epoch: stamp.epoch, gens: [skuGens[i]!, locationsGen!] },
          () => stockLoader.load(sku),
          { tags: ['locations'], reading: count },
        ),
      ),
    );
    return new Map(unique.map((sku, i) => [sku, values[i]!]));
  }

  return {
    enabled: true,
    product: (sku) => product(sku),
    async products(query) {
      const stamp = await currentStamp('product_list', ['product-lists']);
      if (!stamp) return listProducts(db, query);
      const id = createHash('sha256')
        .update(JSON.stringify([query.status ?? null, query.q ?? null, query.limit, query.cursor ?? null]))
        .digest('base64url')
        .slice(0, 22);
      return lookup('product_list', `product-list:${id}`, stamp, () => listProducts(db, query), {
        tags: ['product-lists'],
      });
    },
    async stockStatus(skus, location) {
      const bySku = await statusOf(skus, true);
      const found = skus.filter((sku) => bySku.get(sku));
      return {
        items: found.map((sku) => {
          const status = bySku.get(sku)!;
          return location === undefined ? status : atLocation(status, location);
        }),
        notFound: skus.filter((sku) => !bySku.get(sku)),
      };
    },
    invalidate: (changes) => invalidations.load(changes),
    async warm(top) {
      const skus = await readCounts.top(top);
      const before = counts.product.loads + counts.stock.loads;
      for (let i = 0; i < skus.length; i += 100) {
        const batch = skus.slice(i, i + 100).map((s) => s.sku);
        // Warming is not a read: it counts none, or every warmed sku would never fade.
        await Promise.all([...batch.map((sku) => product(sku, false)), statusOf(batch, false)]);
      }
      await readCounts.decay(top * 10);
      return { skus: skus.length, loads: counts.product.loads + counts.stock.loads - before };
    },
    counts: () => counts,
    topReads: (limit) => readCounts.top(limit),
    async close() {
      await readCounts.close();
      await bento.disconnectAll().catch(() => undefined);
      busBase.disconnect();
      cacheRedis.disconnect();
    },
  };
}

/** Several jobs' changes as one: every sku once. */
function mergeChanges(all: readonly CacheChanges[]): CacheChanges {
  return {
    products: [...new Set(all.flatMap((c) => c.products ?? []))],
    stock: [...new Set(all.flatMap((c) => c.stock ?? []))],
    productLists: all.some((c) => c.productLists),
    locations: all.some((c) => c.locations),
  };
}

/** CACHE_ENABLED=false: every read goes to Postgres; nothing to invalidate. */
function disabledCache(db: Knex, counts: Record<CacheName, CacheCounts>): ReadCache {
  return {
    enabled: false,
    product: (sku) => getProduct(db, sku),
    products: (query) => listProducts(db, query),
    stockStatus: (skus, location) => getStockStatus(db, skus, location),
    invalidate: async () => undefined,
    warm: async () => ({ skus: 0, loads: 0 }),
    counts: () => counts,
    topReads: async () => [],
    close: async () => undefined,
  };
}
