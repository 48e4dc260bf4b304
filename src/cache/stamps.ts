import type { RedisClient } from '../connections.js';
import { stampKeys } from '../redis-keys.js';

/**
 * Read-your-writes for the read cache. Every cached entry depends on named generations
 * (`product:<sku>`, `stock:<sku>`, `product-lists`, `locations`) kept in the queue Redis, and
 * carries the stamp its reader took *before* loading from Postgres. A worker bumps the
 * generations a job changed after its transaction commits and before the job completes. An entry
 * is served only while its stamp is at least the current generations, so:
 * - a read that starts after a job completed sees the bumped generation, and any entry loaded
 *   before that commit (even one stored after the invalidation: the race of a slow reader) has an
 *   older stamp and is reloaded;
 * - a stamp taken after the bump was taken after the commit, so the load behind it saw the commit.
 *
 * Generations live in the queue Redis (noeviction), never in the cache Redis: an evicted
 * generation would read as older than the entries stamped with it. They are server-clock based
 * (max(previous + 1, Redis TIME in µs)), so a Redis that lost its last writes still moves them
 * forward, and an epoch (recreated when missing) retires every stamp after a flush of that Redis.
 */

export interface Stamp {
  epoch: string;
  /** One per dependency, in the order the entry named them. */
  gens: number[];
}

// Keys: the epoch, then one per dependency. Returns the epoch and the generations (0: never bumped).
const readScript = `
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  local t = redis.call('TIME')
  epoch = t[1] .. '.' .. t[2]
  if not redis.call('SET', KEYS[1], epoch, 'NX') then epoch = redis.call('GET', KEYS[1]) end
end
local out = { epoch }
for i = 2, #KEYS do out[i] = redis.call('GET', KEYS[i]) or '0' end
return out`;

const bumpScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if not redis.call('GET', KEYS[1]) then redis.call('SET', KEYS[1], t[1] .. '.' .. t[2], 'NX') end
for i = 2, #KEYS do
  local previous = tonumber(redis.call('GET', KEYS[i]) or '0')
  redis.call('SET', KEYS[i], string.format('%.0f', math.max(previous + 1, now)))
end
return #KEYS - 1`;

type StampRedis = RedisClient & {
  // Variadic scripts: the first argument is the number of keys.
  stockflowStampRead(numberOfKeys: number, ...keys: string[]): Promise<string[]>;
  stockflowStampBump(numberOfKeys: number, ...keys: string[]): Promise<number>;
};

export interface Stamps {
  /** The current stamp of these dependencies (one round trip). */
  read(dependencies: string[]): Promise<Stamp>;
  /** Moves these generations past every stamp taken so far. */
  bump(dependencies: string[]): Promise<void>;
}

/** `namespace`: the cache's keys (`redisKeys(config).cache`), hash-tagged on a cluster so a script's keys share a slot. */
export function createStamps(redis: RedisClient, namespace: string): Stamps {
  // defineCommand runs the scripts by SHA (EVALSHA), loading them once per connection.
  if (!('stockflowStampRead' in redis)) {
    redis.defineCommand('stockflowStampRead', { lua: readScript });
    redis.defineCommand('stockflowStampBump', { lua: bumpScript });
  }
  const r = redis as StampRedis;
  const keysOf = (dependencies: string[]) => stampKeys(namespace, dependencies);
  return {
    async read(dependencies) {
      const keys = keysOf(dependencies);
      const [epoch, ...gens] = await r.stockflowStampRead(keys.length, ...keys);
      return { epoch: epoch!, gens: gens.map(Number) };
    },
    async bump(dependencies) {
      if (dependencies.length === 0) return;
      const keys = keysOf([...new Set(dependencies)]);
      await r.stockflowStampBump(keys.length, ...keys);
    },
  };
}

/** An entry stamped `entry` may be served to a reader who read `current` (same dependencies, same order). */
export function isCurrent(entry: Stamp, current: Stamp): boolean {
  return entry.epoch === current.epoch && current.gens.every((gen, i) => (entry.gens[i] ?? -1) >= gen);
}
