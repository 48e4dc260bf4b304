import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import type { Config } from './config.js';
import { createDb, type Db, type DbRole, isPgError, pgErrorCodes } from './db/knex.js';
import { createReplicaTracker, type ReplicaTracker } from './db/wal-position.js';
import { DatabaseMissingError } from './errors/database-missing-error.js';
import { RedisNotDurableError } from './errors/redis-not-durable-error.js';
import { ServiceUnreachableError } from './errors/service-unreachable-error.js';
import { type Logger, redactUrl } from './log.js';
import { checkKeySlots, keyGroups, redisKeys } from './redis-keys.js';

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
 * The web process's replica (DATABASE_REPLICA_URL), if set: a pool under the `api` role's guards
 * and the tracker of its replay position. Not checked at start, unlike openPostgres: a replica
 * that is away sends its reads to the primary (the tracker warns), it keeps no web process down.
 */
export function openReplica(config: Config, log: Logger): { db: Db; tracker: ReplicaTracker } | undefined {
  const url = config.DATABASE_REPLICA_URL;
  if (!url) return undefined;
  const db = createDb({ ...config, DATABASE_URL: url }, 'api');
  log.info({ replica: redactUrl(url) }, 'reads that may lag go to the Postgres replica');
  return { db, tracker: createReplicaTracker(db, log, config.REPLICA_WAIT_MS) };
}

/**
 * Who a Redis connection is for. Every role gets the same target (REDIS_URL, the master the
 * REDIS_SENTINELS name, or the cluster of REDIS_CLUSTER_NODES) and never gives up reconnecting; they differ in what a command does while
 * Redis is away:
 * - `worker`: waits (`maxRetriesPerRequest: null`), so a Redis restart or failover pauses work
 *   instead of failing it (BullMQ's blocking connection needs this too);
 * - `producer`: fails fast (no offline queue, one retry, a command timeout), so an HTTP request
 *   gets a 503 instead of hanging while Redis is down or its link is stalled;
 * - `subscriber`: pub/sub only; keeps its subscriptions across reconnects;
 * - `cache`, `cache-bus`: the read cache's own connections to CACHE_REDIS_URL (default: the queue
 *   Redis): reads fail fast and go to Postgres; the bus waits.
 */
export type RedisRole = 'worker' | 'producer' | 'subscriber' | 'cache' | 'cache-bus';

/** A connection as the platform uses it: one Redis (or its sentinels' master), or a Redis Cluster. */
export type RedisClient = Redis | Cluster;

type RedisSettings = Pick<
  Config,
  | 'REDIS_URL'
  | 'REDIS_SENTINELS'
  | 'REDIS_SENTINEL_NAME'
  | 'REDIS_SENTINEL_PASSWORD'
  | 'REDIS_CLUSTER_NODES'
  | 'REDIS_PRODUCER_COMMAND_TIMEOUT_MS'
  | 'CACHE_REDIS_URL'
>;

/** Where a role connects: a URL, or sentinels (with the URL's credentials, db and TLS for the master). */
export function redisTargetOf(config: RedisSettings, role: RedisRole): string {
  const cache = role === 'cache' || role === 'cache-bus';
  if (cache && config.CACHE_REDIS_URL) return redactUrl(config.CACHE_REDIS_URL);
  if (config.REDIS_CLUSTER_NODES)
    return `cluster ${config.REDIS_CLUSTER_NODES.map((n) => `${n.host}:${n.port}`).join(',')}`;
  if (config.REDIS_SENTINELS) {
    const nodes = config.REDIS_SENTINELS.map((s) => `${s.host}:${s.port}`).join(',');
    return `sentinels ${nodes} (master ${config.REDIS_SENTINEL_NAME})`;
  }
  return redactUrl(config.REDIS_URL);
}

/**
 * The ioredis options of a role: one place for every connection the platform opens, so the cache,
 * pub/sub and rate limits follow a failover exactly as the queues do.
 */
export function redisOptions(
  config: RedisSettings,
  role: RedisRole,
): { url?: string; options: RedisOptions } {
  const failFast = role === 'producer' || role === 'cache';
  const options: RedisOptions = {
    lazyConnect: true,
    connectionName: `stockflow-${role}`,
    maxRetriesPerRequest: failFast ? 1 : null,
    enableOfflineQueue: !failFast,
    // A stalled link (no answer, no error) fails the command instead of hanging the request.
    ...(failFast ? { commandTimeout: config.REDIS_PRODUCER_COMMAND_TIMEOUT_MS } : {}),
    // Give up connecting at start quickly; reconnects after that back off up to 2 s, forever.
    connectTimeout: 5000,
    retryStrategy: (times) => Math.min(times * 200, 2000),
    // A former master demoted by a failover answers writes with READONLY: reconnect (through the
    // sentinels, to the new master) and send the command again.
    reconnectOnError: (error) => (/READONLY/.test(error.message) ? 2 : false),
  };
  const cacheUrl = role === 'cache' || role === 'cache-bus' ? config.CACHE_REDIS_URL : undefined;
  if (cacheUrl) return { url: cacheUrl, options };
  if (!config.REDIS_SENTINELS) return { url: config.REDIS_URL, options };
  const url = new URL(config.REDIS_URL);
  const db = Number(url.pathname.slice(1) || 0);
  return {
    options: {
      ...options,
      sentinels: config.REDIS_SENTINELS,
      name: config.REDIS_SENTINEL_NAME,
      role: 'master',
      ...(config.REDIS_SENTINEL_PASSWORD ? { sentinelPassword: config.REDIS_SENTINEL_PASSWORD } : {}),
      ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
      ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
      ...(Number.isInteger(db) && db > 0 ? { db } : {}),
      ...(url.protocol === 'rediss:' ? { tls: {}, enableTLSForSentinelMode: true } : {}),
      // Subscribe to the sentinels' +switch-master: a failover moves every connection at once,
      // also those whose socket to the old master hangs (a paused or partitioned master).
      failoverDetector: true,
      sentinelRetryStrategy: (times) => Math.min(times * 200, 2000),
    },
  };
}

/**
 * The cluster options of a role (REDIS_CLUSTER_NODES), or undefined when the role does not go to
 * the cluster (no cluster, or the cache roles with their own CACHE_REDIS_URL). The role's
 * behaviour is the same as on one Redis: its per-command retries, command timeout and offline
 * queue; reconnects back off up to 2 s, forever. The cluster client follows MOVED and ASK and
 * a failover (a replica promoted in its master's place) by itself. REDIS_URL lends its
 * credentials and TLS to every node.
 */
export function redisClusterOptions(
  config: RedisSettings,
  role: RedisRole,
): { nodes: { host: string; port: number }[]; options: ClusterOptions } | undefined {
  const cache = role === 'cache' || role === 'cache-bus';
  if (!config.REDIS_CLUSTER_NODES || (cache && config.CACHE_REDIS_URL)) return undefined;
  const { options: single } = redisOptions(config, role);
  const url = new URL(config.REDIS_URL);
  return {
    nodes: config.REDIS_CLUSTER_NODES,
    options: {
      lazyConnect: true,
      enableOfflineQueue: single.enableOfflineQueue ?? true,
      clusterRetryStrategy: (times) => Math.min(times * 200, 2000),
      // A failover takes the cluster a few seconds (cluster-node-timeout): keep asking meanwhile.
      retryDelayOnClusterDown: 200,
      retryDelayOnFailover: 200,
      redisOptions: {
        connectionName: single.connectionName,
        // BullMQ reads maxRetriesPerRequest here: null for the worker role's blocking connections.
        maxRetriesPerRequest: single.maxRetriesPerRequest ?? null,
        connectTimeout: single.connectTimeout,
        ...(single.commandTimeout ? { commandTimeout: single.commandTimeout } : {}),
        ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
        ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
        ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
      },
    },
  };
}

/** A client for `role`, not connected yet (`lazyConnect`); connection errors are not thrown as events. */
export function createRedis(config: RedisSettings, role: RedisRole): RedisClient {
  const cluster = redisClusterOptions(config, role);
  if (cluster) {
    const client = new Cluster(cluster.nodes, cluster.options);
    client.on('error', () => undefined);
    return client;
  }
  const { url, options } = redisOptions(config, role);
  const redis = url ? new Redis(url, options) : new Redis(options);
  // ioredis reports connection errors as events; without a listener they would crash the process.
  redis.on('error', () => undefined);
  return redis;
}

/**
 * Opens a connection of `role` and waits until it is ready; a Redis that cannot be reached fails
 * the start. On a cluster, the key-slot self-test runs first (src/redis-keys.ts).
 */
export async function openRedis(
  config: Config,
  role: 'worker' | 'producer' | 'subscriber',
): Promise<RedisClient> {
  if (config.REDIS_CLUSTER_NODES) checkKeySlots(keyGroups(redisKeys(config)));
  const redis = createRedis(config, role);
  try {
    await connectOnce(redis);
  } catch (error) {
    redis.disconnect();
    throw new ServiceUnreachableError('Redis', redisTargetOf(config, role), error);
  }
  return redis;
}

async function connectOnce(redis: RedisClient): Promise<void> {
  const failed = new Promise<never>((_, reject) => redis.once('error', reject));
  await Promise.race([redis.connect(), failed]);
}

/** The Redis settings a queue Redis needs to keep accepted jobs, as read from it (undefined: not readable). */
export interface RedisDurabilitySettings {
  maxmemoryPolicy?: string;
  appendonly?: string;
  appendfsync?: string;
  save?: string;
}

/**
 * Reads the settings with CONFIG GET (one parameter per call: Redis before 7 takes one), or, where
 * a managed service forbids CONFIG, from INFO (which has the policy and whether AOF is on, not the
 * fsync policy). Undefined when neither answers.
 */
export async function readRedisSettings(redis: RedisClient): Promise<RedisDurabilitySettings | undefined> {
  if (redis instanceof Cluster) return readClusterSettings(redis);
  try {
    const names = ['maxmemory-policy', 'appendonly', 'appendfsync', 'save'];
    const answers = await Promise.all(names.map((name) => redis.config('GET', name) as Promise<string[]>));
    const got = Object.fromEntries(answers.map(([name, value]) => [name ?? '', value ?? '']));
    return {
      maxmemoryPolicy: got['maxmemory-policy'],
      appendonly: got.appendonly,
      appendfsync: got.appendfsync,
      save: got.save,
    };
  } catch {
    try {
      const info = `${await redis.info('memory')}\n${await redis.info('persistence')}`;
      const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
      const aof = field('aof_enabled');
      return {
        maxmemoryPolicy: field('maxmemory_policy'),
        appendonly: aof === undefined ? undefined : aof === '1' ? 'yes' : 'no',
      };
    } catch {
      return undefined;
    }
  }
}

/**
 * A cluster's settings are its masters': each holds its own queues. The first master whose
 * settings can lose jobs stands for the cluster (else the first), so the check and the alert see
 * the weakest one.
 */
async function readClusterSettings(cluster: Cluster): Promise<RedisDurabilitySettings | undefined> {
  const all = await Promise.all(cluster.nodes('master').map((node) => readRedisSettings(node)));
  const read = all.filter((s): s is RedisDurabilitySettings => s !== undefined);
  if (read.length === 0) return undefined;
  return read.find((s) => durabilityProblems(s).length > 0) ?? read[0];
}

/** What in these settings can lose accepted jobs: an eviction policy other than noeviction, AOF off. */
export function durabilityProblems(settings: RedisDurabilitySettings): string[] {
  const problems: string[] = [];
  if (settings.maxmemoryPolicy !== undefined && settings.maxmemoryPolicy !== 'noeviction')
    problems.push(`maxmemory-policy is ${settings.maxmemoryPolicy}, not noeviction`);
  if (settings.appendonly !== undefined && settings.appendonly !== 'yes') problems.push('appendonly is no');
  return problems;
}

/**
 * The start-up check of the queue Redis (web and worker processes): an eviction policy other than
 * `noeviction` (BullMQ's keys can be evicted) or no AOF (a restart loses every job since the last
 * snapshot, or all of them) is refused with REDIS_DURABILITY_CHECK=refuse (the production
 * default), and otherwise logged as an error; `stockflow_redis_durable` (collectRedisSettings)
 * carries it to the StockflowRedisNotDurable alert either way. `appendfsync no` is a warning.
 */
export async function checkRedisDurability(
  redis: RedisClient,
  config: Pick<Config, 'redisDurabilityCheck'>,
  log: Logger,
): Promise<RedisDurabilitySettings | undefined> {
  const settings = await readRedisSettings(redis);
  if (!settings) {
    log.warn(
      'could not read the Redis configuration; make sure maxmemory-policy is noeviction and appendonly is yes',
    );
    return undefined;
  }
  const problems = durabilityProblems(settings);
  if (problems.length > 0 && config.redisDurabilityCheck === 'refuse')
    throw new RedisNotDurableError(problems);
  const policy = settings.maxmemoryPolicy;
  if (policy !== undefined && policy !== 'noeviction') {
    log.error({ policy }, 'Redis maxmemory-policy is not noeviction: queued jobs can be evicted and lost');
  }
  if (settings.appendonly !== undefined && settings.appendonly !== 'yes') {
    const snapshots = settings.save ?? '';
    log.error(
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
  return settings;
}

/**
 * Warns at start when this process's Postgres pool may not fit: its DATABASE_POOL_MAX against what
 * the server allows (max_connections less the superuser slots), what other clients hold now, and
 * DATABASE_RESERVED_CONNECTIONS kept for the release step and an operator. A point-in-time look
 * (other pools grow as they are used), so it also says how many processes of this pool size fit.
 */
export async function checkPostgresRoom(
  db: Db,
  config: Pick<Config, 'DATABASE_POOL_MAX' | 'DATABASE_RESERVED_CONNECTIONS'>,
  log: Logger,
): Promise<{ room: number; fits: number } | undefined> {
  try {
    const { rows } = await db.raw<{ rows: { max: number; superuser: number; others: number }[] }>(
      `select current_setting('max_connections')::int as max,
              current_setting('superuser_reserved_connections')::int as superuser,
              (select count(*)::int from pg_stat_activity
                where backend_type = 'client backend' and pid <> pg_backend_pid()) as others`,
    );
    const { max, superuser, others } = rows[0]!;
    const usable = max - superuser - config.DATABASE_RESERVED_CONNECTIONS;
    const room = usable - others;
    const fits = Math.max(0, Math.floor(usable / config.DATABASE_POOL_MAX));
    if (config.DATABASE_POOL_MAX > room) {
      log.warn(
        {
          poolMax: config.DATABASE_POOL_MAX,
          maxConnections: max,
          superuserReserved: superuser,
          reservedForOperators: config.DATABASE_RESERVED_CONNECTIONS,
          inUseByOthers: others,
          processesThatFit: fits,
        },
        'the Postgres pool may not fit: lower DATABASE_POOL_MAX or raise max_connections, or connections will be refused ("too many clients")',
      );
    }
    return { room, fits };
  } catch (error) {
    log.warn({ err: error }, 'could not read max_connections to check that the Postgres pool fits');
    return undefined;
  }
}
