import type { RedisClient } from '../connections.js';
import type { Logger } from '../log.js';

/** How often a process adds its read counts to the shared sorted set. */
const flushMs = 5000;

export interface ReadCounts {
  record(sku: string): void;
  /** The most-read skus, most first (this process's unflushed reads included). */
  top(limit: number): Promise<{ sku: string; reads: number }[]>;
  /** Halves every count and keeps the `keep` most-read: yesterday's favourites fade. */
  decay(keep: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Read counts per sku in a Redis sorted set, for warming. Counted in memory and added every few
 * seconds in one pipeline, so a read costs no Redis round trip. Losing them (an evicting cache
 * Redis, a crash) only makes warming less apt.
 */
export function createReadCounts(redis: RedisClient, key: string, log: Logger): ReadCounts {
  let pending = new Map<string, number>();
  const flush = async () => {
    if (pending.size === 0) return;
    const batch = pending;
    pending = new Map();
    const pipeline = redis.pipeline();
    for (const [sku, n] of batch) pipeline.zincrby(key, n, sku);
    await pipeline.exec().catch((error: unknown) => log.debug({ err: error }, 'read counts not flushed'));
  };
  const timer = setInterval(() => void flush(), flushMs);
  timer.unref();
  return {
    record(sku) {
      pending.set(sku, (pending.get(sku) ?? 0) + 1);
    },
    async top(limit) {
      await flush();
      if (limit <= 0) return [];
      const flat = await redis.zrevrange(key, 0, limit - 1, 'WITHSCORES');
      const out: { sku: string; reads: number }[] = [];
      for (let i = 0; i < flat.length; i += 2) out.push({ sku: flat[i]!, reads: Number(flat[i + 1]) });
      return out;
    },
    async decay(keep) {
      await redis
        .multi()
        .zunionstore(key, 1, key, 'WEIGHTS', 0.5)
        .zremrangebyscore(key, '-inf', '(0.5')
        .zremrangebyrank(key, 0, -(keep + 1))
        .exec();
    },
    async close() {
      clearInterval(timer);
      await flush();
    },
  };
}
