import type { Knex } from 'knex';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { CacheCounts, CacheName, ReadCache } from '../cache/read-cache.js';
import type { RedisClient } from '../connections.js';
import { durabilityProblems, type RedisDurabilitySettings, readRedisSettings } from '../connections.js';
import type { Queues } from '../queues/queues.js';

/**
 * The Prometheus metrics of one process, in one registry: what the process does (HTTP, jobs,
 * webhook attempts, cache, Postgres pool, event loop) and, on web processes, the state of the
 * platform read at scrape time (queue depth, oldest waiting job, stock, open alerts, streams).
 * Names follow Prometheus conventions (base units, `_total` counters) and pass `promtool check metrics`.
 */
export interface Metrics {
  registry: Registry;
  httpRequests: Histogram<'method' | 'route' | 'status'>;
  httpWaits: Histogram<'method' | 'route' | 'status'>;
  jobDuration: Histogram<'queue' | 'job'>;
  jobWait: Histogram<'queue' | 'job'>;
  jobsCompleted: Counter<'queue' | 'job'>;
  jobsFailed: Counter<'queue' | 'job' | 'code'>;
  jobRetries: Counter<'queue' | 'job' | 'code'>;
  /** Jobs per group-commit transaction (src/workers/group-commit.ts), by queue. */
  batchJobs: Histogram<'queue' | 'outcome'>;
  webhookAttempts: Counter<'outcome'>;
  webhookAttemptDuration: Histogram<'outcome'>;
  webhookDeliveries: Counter<'outcome'>;
  /** Workers the watchdog replaced (src/workers/watchdog.ts), by queue and reason. */
  workerRecreated: Counter<'queue' | 'reason'>;
}

const latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2.5, 10, 30];
const jobBuckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

// prom-client's gauges named `*_total` (active handles, requests, resources) break the convention
// promtool checks ("non-counter metrics should not have _total suffix"); the same figures are not
// needed for operating Stockflow.
const droppedDefaults = ['active_handles_total', 'active_requests_total', 'active_resources_total'];

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'stockflow_' });
  for (const name of droppedDefaults) registry.removeSingleMetric(`stockflow_nodejs_${name}`);
  const registers = [registry];
  return {
    registry,
    httpRequests: new Histogram({
      name: 'stockflow_http_request_duration_seconds',
      help: 'HTTP request duration by method, route pattern and status code (streams and Prefer: wait excluded)',
      labelNames: ['method', 'route', 'status'],
      buckets: latencyBuckets,
      registers,
    }),
    httpWaits: new Histogram({
      name: 'stockflow_http_wait_request_duration_seconds',
      help: 'Duration of requests that waited for their job (Prefer: wait), by method, route and status',
      labelNames: ['method', 'route', 'status'],
      buckets: jobBuckets,
      registers,
    }),
    jobDuration: new Histogram({
      name: 'stockflow_job_duration_seconds',
      help: 'Time a job attempt spent in its handler, by queue and job name',
      labelNames: ['queue', 'job'],
      buckets: jobBuckets,
      registers,
    }),
    jobWait: new Histogram({
      name: 'stockflow_job_wait_seconds',
      help: 'Time from a job being due (enqueued, or its delay over) to its first attempt starting',
      labelNames: ['queue', 'job'],
      buckets: jobBuckets,
      registers,
    }),
    jobsCompleted: new Counter({
      name: 'stockflow_jobs_completed_total',
      help: 'Jobs completed, by queue and job name',
      labelNames: ['queue', 'job'],
      registers,
    }),
    jobsFailed: new Counter({
      name: 'stockflow_jobs_failed_total',
      help: 'Jobs failed for good (a domain rule, or the last attempt), by queue, job name and error code',
      labelNames: ['queue', 'job', 'code'],
      registers,
    }),
    jobRetries: new Counter({
      name: 'stockflow_job_retries_total',
      help: 'Job attempts that failed and will be retried, by queue, job name and error code',
      labelNames: ['queue', 'job', 'code'],
      registers,
    }),
    batchJobs: new Histogram({
      name: 'stockflow_group_commit_batch_jobs',
      help: 'Jobs per group-commit transaction, by queue and outcome (alone: a lone job; committed; retried: rolled back, its jobs run alone)',
      labelNames: ['queue', 'outcome'],
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    }),
    webhookAttempts: new Counter({
      name: 'stockflow_webhook_attempts_total',
      help: 'Webhook delivery attempts by outcome (delivered, failed, gone, refused)',
      labelNames: ['outcome'],
      registers,
    }),
    webhookAttemptDuration: new Histogram({
      name: 'stockflow_webhook_attempt_duration_seconds',
      help: 'Duration of webhook delivery attempts by outcome',
      labelNames: ['outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    webhookDeliveries: new Counter({
      name: 'stockflow_webhook_deliveries_total',
      help: 'Webhook deliveries finished, by outcome (delivered; gone: the endpoint answered 410; exhausted)',
      labelNames: ['outcome'],
      registers,
    }),
    workerRecreated: new Counter({
      name: 'stockflow_worker_recreated_total',
      help: 'Workers replaced by the watchdog (blocking connection not ready, fetch loop stopped, or no progress with jobs ready), by queue and reason',
      labelNames: ['queue', 'reason'],
      registers,
    }),
  };
}

/**
 * The queue Redis's durability settings, read at scrape time (a failover or a CONFIG SET changes
 * them): `stockflow_redis_settings_info` carries them as labels, `stockflow_redis_durable` is 0 when
 * Redis can lose accepted jobs (maxmemory-policy other than noeviction, or no AOF). Neither is
 * exported while the settings cannot be read.
 */
export function collectRedisSettings(metrics: Metrics, redis: RedisClient): void {
  const registers = [metrics.registry];
  // One read per scrape, shared by both gauges; the last settings read stand in while Redis is away.
  let last: RedisDurabilitySettings | undefined;
  let reading: Promise<RedisDurabilitySettings | undefined> | undefined;
  const read = () => {
    reading ??= readRedisSettings(redis)
      .catch(() => undefined)
      .then((settings) => {
        last = settings ?? last;
        return last;
      })
      .finally(() => {
        reading = undefined;
      });
    return reading;
  };
  new Gauge({
    name: 'stockflow_redis_settings_info',
    help: 'The queue Redis settings in force (maxmemory-policy, appendonly, appendfsync) as labels; always 1',
    labelNames: ['maxmemory_policy', 'appendonly', 'appendfsync'],
    registers,
    async collect() {
      this.reset();
      const settings = await read();
      if (!settings) return;
      this.set(
        {
          maxmemory_policy: settings.maxmemoryPolicy ?? 'unknown',
          appendonly: settings.appendonly ?? 'unknown',
          appendfsync: settings.appendfsync ?? 'unknown',
        },
        1,
      );
    },
  });
  new Gauge({
    name: 'stockflow_redis_durable',
    help: 'Whether the queue Redis keeps accepted jobs across a restart (noeviction and AOF on): 1 yes, 0 no',
    registers,
    async collect() {
      this.reset();
      const settings = await read();
      if (settings) this.set(durabilityProblems(settings).length === 0 ? 1 : 0);
    },
  });
}

/** Pool gauges of a knex instance (tarn), read at scrape time. */
export function collectPool(metrics: Metrics, db: Knex): void {
  const pool = (db.client as { pool?: TarnPool }).pool;
  const registers = [metrics.registry];
  const gauge = (name: string, help: string, read: (p: TarnPool) => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(pool ? read(pool) : 0);
      },
    });
  gauge(
    'stockflow_pg_pool_connections',
    'Postgres connections open in the pool (used + free)',
    (p) => p.numUsed() + p.numFree(),
  );
  gauge('stockflow_pg_pool_connections_used', 'Postgres connections lent out', (p) => p.numUsed());
  gauge('stockflow_pg_pool_waiting', 'Callers waiting for a Postgres connection', (p) =>
    p.numPendingAcquires(),
  );
  gauge('stockflow_pg_pool_max', 'Largest size of the Postgres pool (DATABASE_POOL_MAX)', (p) => p.max);
}

interface TarnPool {
  max: number;
  numUsed(): number;
  numFree(): number;
  numPendingAcquires(): number;
}

const cacheCounters: [keyof CacheCounts, string, string][] = [
  ['hits', 'stockflow_cache_hits_total', 'Reads served fresh from the read cache'],
  ['misses', 'stockflow_cache_misses_total', 'Reads loaded from Postgres'],
  [
    'staleServes',
    'stockflow_cache_stale_serves_total',
    'Reads served after the TTL (grace) while a reload ran',
  ],
  ['loads', 'stockflow_cache_loads_total', 'Loads from Postgres (background reloads and warming included)'],
  [
    'invalidatedOnRead',
    'stockflow_cache_invalidated_reads_total',
    'Entries refused on read because a job had changed their data since they were loaded',
  ],
  ['bypassed', 'stockflow_cache_bypassed_total', 'Reads that skipped the cache (its Redis unreachable)'],
];

/** The read cache's counters of this process, per cache, read at scrape time. */
export function collectCache(metrics: Metrics, cache: ReadCache): void {
  for (const [field, name, help] of cacheCounters) {
    new Counter({
      name,
      help: `${help}, by cache`,
      labelNames: ['cache'],
      registers: [metrics.registry],
      collect() {
        this.reset();
        for (const [cacheName, counts] of Object.entries(cache.counts()) as [CacheName, CacheCounts][]) {
          this.inc({ cache: cacheName }, counts[field]);
        }
      },
    });
  }
  new Gauge({
    name: 'stockflow_cache_hit_ratio',
    help: 'Share of reads served from the read cache (fresh or within grace) since the process started, by cache',
    labelNames: ['cache'],
    registers: [metrics.registry],
    collect() {
      this.reset();
      for (const [cacheName, c] of Object.entries(cache.counts()) as [CacheName, CacheCounts][]) {
        const served = c.hits + c.staleServes;
        const reads = served + c.misses;
        this.set({ cache: cacheName }, reads === 0 ? 0 : served / reads);
      }
    },
  });
}

const jobStates = [
  'waiting',
  'delayed',
  'active',
  'completed',
  'failed',
  'prioritized',
  'waiting-children',
] as const;

/** Queue depth per state and the age of the oldest waiting job, read from Redis at scrape time. */
export function collectQueues(metrics: Metrics, queues: Queues): void {
  new Gauge({
    name: 'stockflow_queue_jobs',
    help: 'Jobs per queue and state',
    labelNames: ['queue', 'state'],
    registers: [metrics.registry],
    async collect() {
      this.reset();
      await Promise.all(
        Object.entries(queues).map(async ([name, queue]) => {
          const counts = await queue.getJobCounts(...jobStates);
          for (const state of jobStates) this.set({ queue: name, state }, counts[state] ?? 0);
        }),
      );
    },
  });
  new Gauge({
    name: 'stockflow_queue_oldest_waiting_seconds',
    help: 'Age of the oldest job waiting in each queue (0 when none waits)',
    labelNames: ['queue'],
    registers: [metrics.registry],
    async collect() {
      this.reset();
      const now = Date.now();
      await Promise.all(
        Object.entries(queues).map(async ([name, queue]) => {
          const since = await oldestWaitingSince(queue);
          this.set({ queue: name }, since === undefined ? 0 : Math.max(0, now - since) / 1000);
        }),
      );
    },
  });
}

/** When the oldest job waiting in a queue became due (ms since epoch), if one waits. */
export async function oldestWaitingSince(queue: Queues[keyof Queues]): Promise<number | undefined> {
  // Ascending from 0 to 0: the tail of the wait list, the job workers take next (the oldest).
  const [oldest] = await queue.getJobs(['wait'], 0, 0, true);
  return oldest ? oldest.timestamp + (oldest.delay ?? 0) : undefined;
}

/** Open event streams (SSE and WebSocket) of this process. */
export function collectStreams(metrics: Metrics, openStreams: () => number): void {
  new Gauge({
    name: 'stockflow_stream_connections',
    help: 'Open event streams (Server-Sent Events and WebSocket) on this process',
    registers: [metrics.registry],
    collect() {
      this.set(openStreams());
    },
  });
}

/** Stock levels per state (the notification states) and levels below their safety stock, from Postgres. */
export function collectStock(metrics: Metrics, db: Knex): void {
  type Row = { state: string; n: number; below: number };
  // Both gauges are collected in the same scrape: one query serves them.
  let inFlight: Promise<Row[]> | undefined;
  const levels = () =>
    (inFlight ??= db
      .raw<{ rows: Row[] }>(
        `select stockflow_stock_state(greatest(0, on_hand - reserved - safety_stock),
                  stockflow_stock_threshold(reorder_point, safety_stock)) as state,
                count(*)::int as n,
                (count(*) filter (where on_hand - reserved < safety_stock))::int as below
         from inventory_levels group by 1`,
      )
      .then((result) => result.rows)
      .finally(() => {
        inFlight = undefined;
      }));
  new Gauge({
    name: 'stockflow_stock_levels',
    help: 'Stock levels (sku x location) by state: in_stock, low (at or below the threshold), out (nothing available)',
    labelNames: ['state'],
    registers: [metrics.registry],
    async collect() {
      const rows = await levels();
      this.reset();
      for (const state of ['in_stock', 'low', 'out']) {
        this.set({ state }, rows.find((r) => r.state === state)?.n ?? 0);
      }
    },
  });
  new Gauge({
    name: 'stockflow_stock_levels_below_safety_stock',
    help: 'Stock levels whose unreserved stock (on hand - reserved) is below their safety stock',
    registers: [metrics.registry],
    async collect() {
      this.set((await levels()).reduce((n, r) => n + r.below, 0));
    },
  });
}

/** Webhook endpoints by status, from Postgres. */
export function collectEndpoints(metrics: Metrics, db: Knex): void {
  new Gauge({
    name: 'stockflow_webhook_endpoints',
    help: 'Webhook endpoints by status (enabled, disabled)',
    labelNames: ['status'],
    registers: [metrics.registry],
    async collect() {
      const rows: { status: string; n: number }[] = await db('webhook_endpoints')
        .groupBy('status')
        .select('status', db.raw('count(*)::int as n'));
      this.reset();
      for (const status of ['enabled', 'disabled'])
        this.set({ status }, rows.find((r) => r.status === status)?.n ?? 0);
    },
  });
}

/** Open platform alerts by rule, from Postgres. */
export function collectAlerts(metrics: Metrics, db: Knex, rules: readonly string[]): void {
  new Gauge({
    name: 'stockflow_alerts_open',
    help: 'Alerts the platform has open, by rule',
    labelNames: ['rule'],
    registers: [metrics.registry],
    async collect() {
      const rows: { rule: string; n: number }[] = await db('ops_alerts')
        .where({ state: 'open' })
        .groupBy('rule')
        .select('rule', db.raw('count(*)::int as n'));
      this.reset();
      for (const rule of rules) this.set({ rule }, rows.find((r) => r.rule === rule)?.n ?? 0);
    },
  });
}
