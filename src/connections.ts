import { Redis } from 'ioredis';
import type { Config } from './config.js';
import { createDb, type Db, type DbRole, isPgError, pgErrorCodes } from './db/knex.js';
import { DatabaseMissingError } from './errors/database-missing-error.js';
import { ServiceUnreachableError } from './errors/service-unreachable-error.js';
import type { Logger } from './log.js';

/**
 * A pool for `role`, with that role's guards (statement, lock and idle-in-transaction timeouts);
 * without one (scripts: migrate, reconcile, replay, keys) no guard applies.
 */
export async function openPostgres(config: Config, role?: DbRole): Promise<Db> {
  const db = createDb(config, role);
  try {
    await db.raw('select 1');
  } catch (error) {
    await db.destroy();
    if (isPgError(error, pgErrorCodes.invalidCatalogName))
      throw new DatabaseMissingError(config.DATABASE_URL);
    throw new ServiceUnreachableError('PostgreSQL', config.DATABASE_URL, error);
  }
  return db;
}

/**
 * Redis connections by role, as BullMQ's production guide advises:
 * - `worker`: retries forever (`maxRetriesPerRequest: null`), so a Redis restart pauses work
 *   instead of crashing it;
 * - `producer`: fails fast, so an HTTP request gets an error instead of hanging while Redis is down;
 * - `subscriber`: pub/sub only; keeps its subscriptions across reconnects.
 */
export async function openRedis(config: Config, role: 'worker' | 'producer' | 'subscriber'): Promise<Redis> {
  const redis = new Redis(config.REDIS_URL, {
    lazyConnect: true,
    connectionName: `stockflow-${role}`,
    maxRetriesPerRequest: role === 'producer' ? 1 : null,
    enableOfflineQueue: role !== 'producer',
    // Give up connecting at start quickly; reconnects after that back off up to 2 s.
    connectTimeout: 5000,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
  // ioredis reports connection errors as events; without a listener they would crash the process.
  redis.on('error', () => undefined);
  try {
    await connectOnce(redis);
  } catch (error) {
    redis.disconnect();
    throw new ServiceUnreachableError('Redis', config.REDIS_URL, error);
  }
  return redis;
}

async function connectOnce(redis: Redis): Promise<void> {
  const failed = new Promise<never>((_, reject) => redis.once('error', reject));
  await Promise.race([redis.connect(), failed]);
}

/**
 * Warns at start about Redis settings that lose accepted jobs: an eviction policy other than
 * `noeviction` (BullMQ's keys can be evicted), and no AOF (`appendonly no`: a Redis restart loses
 * every job and claim since the last snapshot, or all of them without one). Managed services that
 * forbid CONFIG get a warning naming what to check instead.
 */
export async function warnAboutRedisSettings(redis: Redis, log: Logger): Promise<void> {
  let settings: Record<string, string>;
  try {
    // One parameter per call: Redis before 7 takes a single one.
    const names = ['maxmemory-policy', 'appendonly', 'appendfsync', 'save'];
    const answers = await Promise.all(names.map((name) => redis.config('GET', name) as Promise<string[]>));
    settings = Object.fromEntries(answers.map(([name, value]) => [name ?? '', value ?? '']));
  } catch (error) {
    log.warn(
      { err: error },
      'could not read the Redis configuration; make sure maxmemory-policy is noeviction and appendonly is yes',
    );
    return;
  }
  const policy = settings['maxmemory-policy'];
  if (policy !== 'noeviction') {
    log.warn({ policy }, 'Redis maxmemory-policy is not noeviction: queued jobs can be evicted and lost');
  }
  if (settings.appendonly !== 'yes') {
    const snapshots = settings.save ?? '';
    log.warn(
      { appendonly: settings.appendonly, save: snapshots || null },
      snapshots
        ? 'Redis has no AOF (appendonly no): a Redis crash loses the jobs accepted since its last RDB snapshot'
        : 'Redis has no persistence (appendonly no, no RDB snapshots): a Redis restart loses every queued job',
    );
  } else if (settings.appendfsync === 'no') {
    log.warn(
      { appendfsync: 'no' },
      'Redis appendfsync is no: a crash of its machine can lose the last few seconds of accepted jobs',
    );
  }
}
