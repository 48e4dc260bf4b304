import { openReadCache, type ReadCache } from '../cache/read-cache.js';
import type { Config } from '../config.js';
import type { RedisClient } from '../connections.js';
import {
  checkPostgresRoom,
  checkRedisDurability,
  openPostgres,
  openRedis,
  openReplica,
} from '../connections.js';
import type { Db } from '../db/knex.js';
import type { ReplicaTracker } from '../db/wal-position.js';
import { createHorizonTracker, type HorizonTracker } from '../events/horizon.js';
import { createHorizonPositions, type HorizonPositions } from '../events/horizon-positions.js';
import { createLiveHub, type LiveHub } from '../events/live-hub.js';
import type { Logger } from '../log.js';
import { createLatencyRecorder, type LatencyRecorder } from '../ops/latency-windows.js';
import {
  collectAlerts,
  collectCache,
  collectEndpoints,
  collectPool,
  collectQueues,
  collectRedisSettings,
  collectStock,
  collectStreams,
  createMetrics,
  type Metrics,
} from '../ops/metrics.js';
import { type FinishedListener, finishedChannel, listenForFinished } from '../queues/finished-signal.js';
import { closeQueues, createQueues, type Queues } from '../queues/queues.js';
import { redisKeys } from '../redis-keys.js';
import { alertRules } from '../schemas/alerts.js';
import { type SecretBox, secretBoxFromConfig } from '../secrets.js';
import { apiKeysChangedChannel, createKeyVerifier, type KeyVerifier } from './auth.js';
import { createRateLimits, type RateLimits } from './rate-limits.js';
import { createKeyCaps, createSlots, type KeyCaps, type Slots } from './stream-caps.js';

export interface ApiDeps {
  config: Config;
  log: Logger;
  /** The primary: every write, and every read that must see the caller's own writes. */
  db: Db;
  /**
   * DATABASE_REPLICA_URL, when set: the reads that may lag (src/api/replica-reads.ts). `horizons`
   * pairs the event log's proven horizons with the primary's WAL position, for feed reads there.
   */
  replica?: { db: Db; tracker: ReplicaTracker; horizons: HorizonPositions };
  /** Producer-role connection: fails fast so requests never hang on a Redis outage. */
  redis: RedisClient;
  queues: Queues;
  finished: FinishedListener;
  keys: KeyVerifier;
  /**
   * Runs `listener` whenever keys change (a revocation announced on `<prefix>:api-keys:changed`),
   * after the key cache was flushed; returns the function that stops it.
   */
  onKeysChanged(listener: () => void): () => void;
  /** The stable horizon of the event log, as proven by this process. */
  horizon: HorizonTracker;
  /** Live fan-out of the event log to this process's SSE and WebSocket clients. */
  events: LiveHub;
  /** Seals and opens secrets at rest (webhook signing secrets, supplier API keys). */
  secrets: SecretBox;
  /** Abuse limits (docs/security.md): request rates in RedisClient, this process's concurrency caps. */
  limits: { rates: RateLimits; streams: KeyCaps; uploads: KeyCaps; waits: Slots };
  /** Product and stock reads (and, in `npm start`, the workers' invalidations). */
  cache: ReadCache;
  /** This process's Prometheus registry (shared with in-process workers). */
  metrics: Metrics;
  /** Route latencies pooled across web processes for the route_latency alert. */
  latencies: LatencyRecorder;
}

/** What in-process workers (`npm start`, benchmarks, tests) share with the web process: all but Redis. */
export function sharedWorkerDeps(api: ApiDeps, worker: { redis: RedisClient; db?: Db }) {
  const { config, log, queues, cache, metrics, secrets } = api;
  // Their own pool where the caller opened one: workers run under the worker role's Postgres guards.
  return { config, log, db: worker.db ?? api.db, redis: worker.redis, queues, cache, metrics, secrets };
}

/** Opens what the web process needs; `close()` releases it all (after the server has closed). */
export async function openApiDeps(
  config: Config,
  log: Logger,
): Promise<ApiDeps & { close(): Promise<void> }> {
  const secrets = secretBoxFromConfig(config);
  const db = await openPostgres(config, 'api');
  const redis = await openRedis(config, 'producer').catch(async (error: unknown) => {
    await db.destroy();
    throw error;
  });
  await checkPostgresRoom(db, config, log);
  await checkRedisDurability(redis, config, log).catch(async (error: unknown) => {
    redis.disconnect();
    await db.destroy();
    throw error;
  });
  const subscriber = await openRedis(config, 'subscriber');
  const queues = createQueues(redis, config);
  const finished = await listenForFinished(subscriber, config.QUEUE_PREFIX);
  const keys = createKeyVerifier(
    db,
    config.API_KEY_CACHE_SECONDS * 1000,
    log,
    config.AUTH_FAILURE_CACHE_SECONDS * 1000,
  );
  const keysChannel = apiKeysChangedChannel(config.QUEUE_PREFIX);
  const keyListeners = new Set<() => void>();
  subscriber.on('message', (channel) => {
    if (channel !== keysChannel) return;
    keys.flush();
    for (const listener of keyListeners) listener();
  });
  await subscriber.subscribe(keysChannel);
  const horizon = createHorizonTracker(db);
  const events = createLiveHub({ db, horizon, log, pollMs: config.EVENT_STREAM_POLL_MS });
  // A finished job may have written events: wake the live streams instead of waiting for their poll.
  const finishedJobs = finishedChannel(config.QUEUE_PREFIX);
  subscriber.on('message', (channel) => {
    if (channel === finishedJobs) events.wake();
  });
  const cache = await openReadCache({ config, log, db, redis });
  const metrics = createMetrics();
  collectPool(metrics, db);
  collectCache(metrics, cache);
  collectRedisSettings(metrics, redis);
  collectQueues(metrics, queues);
  collectStreams(metrics, () => events.size());
  collectStock(metrics, db);
  collectEndpoints(metrics, db);
  collectAlerts(metrics, db, alertRules);
  const latencies = createLatencyRecorder(redis, redisKeys(config).ops, {
    thresholdMs: config.ALERT_ROUTE_P99_MS,
    windowMs: config.ALERT_ROUTE_WINDOW,
    log,
  });
  const replica = openReplica(config, log);
  return {
    config,
    log,
    db,
    replica: replica && { ...replica, horizons: createHorizonPositions() },
    redis,
    queues,
    finished,
    keys,
    onKeysChanged(listener) {
      keyListeners.add(listener);
      return () => keyListeners.delete(listener);
    },
    horizon,
    events,
    secrets,
    limits: {
      rates: createRateLimits(redis, config),
      streams: createKeyCaps({ perKey: config.STREAMS_PER_KEY, perProcess: config.STREAMS_PER_PROCESS }),
      uploads: createKeyCaps({
        perKey: config.IMAGE_UPLOADS_PER_KEY,
        perProcess: config.IMAGE_UPLOADS_PER_PROCESS,
      }),
      waits: createSlots(config.WAIT_MAX_CONCURRENT),
    },
    cache,
    metrics,
    latencies,
    async close() {
      await latencies.close();
      await cache.close();
      await events.close();
      await finished.close();
      subscriber.disconnect();
      await closeQueues(queues);
      await redis.quit().catch(() => undefined);
      await replica?.db.destroy();
      await db.destroy();
    },
  };
}
