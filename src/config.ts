import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from './errors/config-error.js';

/**
 * The only reader of `process.env`. Every setting has a local default so `npm start` works on a
 * fresh machine; a bad value stops the process at start with a message naming the variable.
 */

const integer = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const booleanFlag = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((value) => value === 'true' || value === '1' || value === 'yes');

const durationUnits: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `500ms`, `5s`, `30m`, `2h`, `5d` → milliseconds. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim());
  if (!match) return undefined;
  return Math.round(Number(match[1]) * durationUnits[match[2]!]!);
}

const duration = z.string().transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0) {
    ctx.addIssue({ code: 'custom', message: 'must be a duration such as 500ms, 5s, 30m, 2h or 5d' });
    return z.NEVER;
  }
  return ms;
});

const durationList = z.string().transform((text, ctx) => {
  const parts = text.split(',').map((part) => parseDuration(part));
  if (parts.length === 0 || parts.length > 50 || parts.some((ms) => ms === undefined || ms <= 0)) {
    ctx.addIssue({ code: 'custom', message: 'must be comma-separated durations such as 5s,5m,30m,2h' });
    return z.NEVER;
  }
  return parts as number[];
});

const base64Key = z
  .string()
  .refine((text) => Buffer.from(text, 'base64').length === 32, 'must be 32 bytes, base64-encoded')
  .transform((text) => Buffer.from(text, 'base64'));

/** `host:port` pairs, comma-separated (IPv6 hosts in brackets). */
const hostPorts = z.string().transform((text, ctx) => {
  const nodes = text
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part) => {
      const match = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(part);
      const port = Number(match?.[2]);
      return match && port > 0 && port < 65536 ? { host: match[1]!, port } : undefined;
    });
  if (nodes.length === 0 || nodes.some((n) => n === undefined)) {
    ctx.addIssue({ code: 'custom', message: 'must be comma-separated host:port pairs' });
    return z.NEVER;
  }
  return nodes as { host: string; port: number }[];
});

const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  /** Loopback by default so a local `npm start` is not exposed; the Procfile's web binds 0.0.0.0. */
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: integer(0, 65535).default(3000),
  DATABASE_URL: z
    .url({ protocol: /^postgres(ql)?$/ })
    .default('postgres://postgres@127.0.0.1:5432/stockflow'),
  /**
   * Connections per pool. Six processes of the Procfile's kinds (two web, four workers) at 10 take
   * 60 of a default Postgres's 100, leaving room for the release step and an operator; each process
   * warns at start when its pool cannot fit (src/connections.ts, checkPostgresRoom).
   */
  DATABASE_POOL_MAX: integer(1, 200).default(10),
  /** Connections kept free for the release step (migrate) and an operator (psql, reconcile). */
  DATABASE_RESERVED_CONNECTIONS: integer(0, 1000).default(5),
  /**
   * A streaming replica of DATABASE_URL for the reads that may lag (docs/architecture.md, "Read
   * replicas"); unset: every read goes to the primary.
   */
  DATABASE_REPLICA_URL: z.url({ protocol: /^postgres(ql)?$/ }).optional(),
  /**
   * How long a read waits for the replica: to replay up to the position the caller sent back
   * (X-Stockflow-LSN), or to tell its position at all. Past it the primary serves the read.
   */
  REPLICA_WAIT_MS: integer(1, 10_000).default(200),
  /** Credentials, database number and TLS of the queue Redis (with REDIS_SENTINELS: of its master). */
  REDIS_URL: z.url({ protocol: /^rediss?$/ }).default('redis://127.0.0.1:6379'),
  /**
   * Redis Sentinel: `host:port` of each sentinel, comma-separated. Every connection (queues, workers,
   * pub/sub, rate limits, the cache unless CACHE_REDIS_URL is set) then asks them for the master of
   * REDIS_SENTINEL_NAME and follows a failover; REDIS_URL's host and port are ignored.
   */
  REDIS_SENTINELS: hostPorts.optional(),
  /**
   * Redis Cluster: `host:port` of some of its nodes (the seeds), comma-separated. Every connection
   * (queues, workers, pub/sub, rate limits, the cache unless CACHE_REDIS_URL is set) is then a
   * cluster client that finds the rest and follows failovers; each queue gets a hash-tagged
   * prefix of its own (`{QUEUE_PREFIX:<queue>}`). REDIS_URL's host, port and database are ignored
   * (its credentials and TLS apply to every node).
   */
  REDIS_CLUSTER_NODES: hostPorts.optional(),
  /** The master group name the sentinels monitor (`sentinel monitor <name> …`); required with REDIS_SENTINELS. */
  REDIS_SENTINEL_NAME: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/)
    .optional(),
  /** Password of the sentinels themselves (`requirepass` of the sentinel processes), if any. */
  REDIS_SENTINEL_PASSWORD: z.string().min(1).optional(),
  /**
   * What a process does at start when the queue Redis can lose accepted jobs (maxmemory-policy
   * other than noeviction, or appendonly no): `refuse` to start, or `alert` (log an error, export
   * stockflow_redis_durable 0, which the StockflowRedisNotDurable rule turns into a critical alert).
   * Default: refuse in production, alert elsewhere.
   */
  REDIS_DURABILITY_CHECK: z.enum(['refuse', 'alert']).optional(),
  /** A producer (web process) command unanswered this long fails: its request gets 503 instead of hanging. */
  REDIS_PRODUCER_COMMAND_TIMEOUT_MS: integer(100, 60_000).default(5000),
  /**
   * Prefix of every Redis key and channel (BullMQ's too). With REDIS_CLUSTER_NODES it takes no
   * braces: each queue, the cache generations and the alert inputs get hash tags of their own.
   */
  QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_{}.-]{1,64}$/, 'letters, digits, _ . - { } only')
    .default('stockflow'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  LOG_PRETTY: booleanFlag.default(false),
  WORKER_CONCURRENCY_PRODUCTS: integer(1, 500).default(10),
  WORKER_CONCURRENCY_MAINTENANCE: integer(1, 50).default(1),
  /** Image jobs are CPU-bound: keep this x IMAGE_SHARP_CONCURRENCY within the cores of the worker. */
  WORKER_CONCURRENCY_IMAGES: integer(1, 64).default(1),
  WORKER_CONCURRENCY_INVENTORY: integer(1, 500).default(16),
  /** Group commit (docs/inventory.md): the inventory jobs a worker has active at once apply in one transaction. */
  INVENTORY_GROUP_COMMIT: booleanFlag.default(true),
  /** Most jobs in one group-commit batch. */
  INVENTORY_BATCH_MAX_JOBS: integer(1, 1000).default(64),
  /** Most lines (movements, reservation lines) in one group-commit batch; a larger job runs alone. */
  INVENTORY_BATCH_MAX_LINES: integer(1, 100_000).default(2000),
  /** Most group-commit batches one worker process runs at once, on disjoint skus (each holds a connection). */
  INVENTORY_BATCH_PARALLEL: integer(1, 64).default(1),
  /** How often the reservation expiry job runs, and how many reservations one run expires at most. */
  RESERVATION_EXPIRY_INTERVAL_MS: integer(500, 3_600_000).default(5000),
  RESERVATION_EXPIRY_BATCH: integer(1, 10_000).default(500),
  /** Attempts for a job whose failure is not a domain error (deadlock, lost connection, timeout). */
  JOB_ATTEMPTS: integer(1, 50).default(5),
  JOB_BACKOFF_MS: integer(1, 3_600_000).default(1000),
  /** Finished jobs stay answerable on GET /api/jobs/:id at least this long. */
  JOB_RETENTION_SECONDS: integer(60, 90 * 86_400).default(7 * 86_400),
  IDEMPOTENCY_TTL_SECONDS: integer(1, 30 * 86_400).default(86_400),
  /** How long a verified API key stays cached in a web process; revocations also flush it at once. */
  API_KEY_CACHE_SECONDS: integer(0, 3600).default(30),
  /** Bound on graceful shutdown: active jobs and in-flight requests get this long to finish. */
  SHUTDOWN_TIMEOUT_MS: integer(100, 600_000).default(30_000),
  /**
   * AES-256-GCM key (base64 of 32 bytes) sealing secrets at rest: webhook signing secrets and
   * supplier API keys. Required in production.
   */
  SECRETS_KEY: base64Key.optional(),
  /** Earlier keys, comma-separated: values they sealed still open until they are resealed. */
  SECRETS_KEY_PREVIOUS: z
    .string()
    .transform((text) =>
      text
        .split(',')
        .map((k) => k.trim())
        .filter(Boolean),
    )
    .pipe(z.array(base64Key))
    .optional(),
  /**
   * Outside production, where a local SECRETS_KEY is kept when none is set: `npm start` writes a
   * fresh key there on first run (mode 0600; git-ignored) and every process reads it from there.
   */
  SECRETS_KEY_FILE: z.string().min(1).default('.stockflow-secrets-key'),
  // --- Abuse limits (docs/security.md) ---
  /** Requests per second on /api/* per API key, across every web process (Redis); 0 turns the limit off. */
  RATE_LIMIT_PER_SECOND: integer(0, 1_000_000).default(1000),
  /** Requests a key may send in one second at most: the reserve above RATE_LIMIT_PER_SECOND refills every 10 s. */
  RATE_LIMIT_BURST: integer(0, 10_000_000).default(2000),
  /** Failed authentications per client IP per minute; beyond it, unknown keys get 429 without a database lookup. */
  AUTH_FAILURES_PER_MINUTE: integer(1, 1_000_000).default(30),
  /** An unknown key is remembered as unknown this long, so repeating it costs no database lookup. */
  AUTH_FAILURE_CACHE_SECONDS: integer(0, 3600).default(60),
  /** Trust X-Forwarded-For from this many proxies in front of the web process (the client IP of auth limits). */
  TRUST_PROXY_HOPS: integer(0, 10).default(0),
  /** Open SSE + WebSocket event streams per API key, and per web process. */
  STREAMS_PER_KEY: integer(1, 100_000).default(10),
  STREAMS_PER_PROCESS: integer(1, 1_000_000).default(1000),
  /** `Prefer: wait` requests waiting at once per web process; beyond it a request gets its 202 at once. */
  WAIT_MAX_CONCURRENT: integer(0, 100_000).default(200),
  /** Event consumers (sync positions) one API key may create. */
  CONSUMERS_PER_KEY: integer(1, 100_000).default(20),
  /** Node's HTTP server: the whole request (headers and body) must arrive within this… */
  HTTP_REQUEST_TIMEOUT_MS: integer(1000, 3_600_000).default(30_000),
  /** …its headers within this… */
  HTTP_HEADERS_TIMEOUT_MS: integer(1000, 600_000).default(10_000),
  /** …and an idle keep-alive connection is closed after this. */
  HTTP_KEEP_ALIVE_TIMEOUT_MS: integer(100, 600_000).default(5_000),
  /** Let admin keys use Bull Board's write actions at /admin/queues (otherwise only ops keys, at /admin/ops/queues). */
  BULL_BOARD_WRITE: booleanFlag.default(false),
  /** Serve /docs and /docs/json without a key (otherwise any valid key may read them). */
  DOCS_PUBLIC: booleanFlag.default(false),
  BODY_LIMIT_BYTES: integer(1024, 100 * 1024 * 1024).default(1024 * 1024),
  /** JSON bodies nested deeper than this (objects and arrays) are refused before they are parsed. */
  JSON_MAX_DEPTH: integer(2, 1000).default(32),
  /** Largest image upload (multipart) or download (sourceUrl) accepted. */
  IMAGE_MAX_UPLOAD_BYTES: integer(1024, 200 * 1024 * 1024).default(20 * 1024 * 1024),
  /**
   * Image uploads (multipart) being received at once per API key, and per web process; beyond
   * them 429. Each holds at most one 256 KiB piece in memory (docs/images.md: worst-case memory).
   */
  IMAGE_UPLOADS_PER_KEY: integer(1, 10_000).default(4),
  IMAGE_UPLOADS_PER_PROCESS: integer(1, 100_000).default(16),
  /** Images with more pixels (width x height) are refused from their header, before decoding. */
  IMAGE_MAX_PIXELS: integer(1, 500_000_000).default(50_000_000),
  /** `name:longEdge` pairs; variants are never enlarged beyond the original. */
  IMAGE_VARIANTS: z
    .string()
    .regex(
      /^[a-z][a-z0-9_]{0,19}:\d{1,5}(,[a-z][a-z0-9_]{0,19}:\d{1,5})*$/,
      'e.g. thumb:200,medium:800,large:1600',
    )
    .default('thumb:200,medium:800,large:1600'),
  /** Also write AVIF variants (several times the CPU of WebP + JPEG: see docs/images.md). */
  IMAGE_AVIF: booleanFlag.default(false),
  /** Per-image bound on sharp's work (libvips timeout) for each pipeline. */
  IMAGE_TIMEOUT_SECONDS: integer(1, 3600).default(60),
  /** libvips threads per image; 0 = cores / WORKER_CONCURRENCY_IMAGES (at least 1). */
  IMAGE_SHARP_CONCURRENCY: integer(0, 64).default(0),
  /** Allow sourceUrl downloads from loopback, private, link-local and metadata addresses (local testing only). */
  IMAGE_ALLOW_PRIVATE_SOURCES: booleanFlag.default(false),
  IMAGE_FETCH_CONNECT_TIMEOUT_MS: integer(100, 120_000).default(5000),
  IMAGE_FETCH_TIMEOUT_MS: integer(100, 600_000).default(30_000),
  /** Local storage driver: where processed images are written; the web process serves them at /media. */
  MEDIA_DIR: z.string().min(1).default('media'),
  /** Put in front of /media/... URLs of the local driver, e.g. https://cdn.example.com (no trailing slash). */
  CDN_BASE_URL: z
    .url({ protocol: /^https?$/ })
    .transform((url) => url.replace(/\/+$/, ''))
    .optional(),
  /** cloudinary://<api_key>:<api_secret>@<cloud_name>[?upload_prefix=...]: switches storage to Cloudinary. */
  CLOUDINARY_URL: z
    .string()
    .regex(/^cloudinary:\/\/[^:@\s]+:[^@\s]+@[^\s?/]+/, 'cloudinary://<api_key>:<api_secret>@<cloud_name>')
    .optional(),
  /** Folder (public_id prefix) for Cloudinary uploads. */
  CLOUDINARY_FOLDER: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/)
    .default('stockflow'),
  /**
   * A worker's lock on an active job (renewed every half of it while the job runs). A job whose
   * worker died is taken over within WORKER_LOCK_DURATION_MS + WORKER_STALLED_INTERVAL_MS (20 s).
   */
  WORKER_LOCK_DURATION_MS: integer(1000, 600_000).default(15_000),
  /** How often workers look for active jobs whose lock expired (default: 5 s, or the lock duration if shorter). */
  WORKER_STALLED_INTERVAL_MS: integer(100, 600_000).optional(),
  /**
   * Watchdog: a worker whose blocking Redis connection has not been ready for this long, whose
   * fetch loop stopped, or that started no job for this long while jobs were ready and it had a free
   * slot, is replaced by a new one (stockflow_worker_recreated_total).
   */
  WORKER_WATCHDOG_MS: integer(1000, 3_600_000).default(20_000),
  WORKER_CONCURRENCY_WEBHOOKS: integer(1, 500).default(20),
  // Orders and inbound PMS webhooks (docs/orders.md).
  WORKER_CONCURRENCY_ORDERS: integer(1, 500).default(8),
  WORKER_CONCURRENCY_INBOUND: integer(1, 500).default(4),
  /** How long an unconfirmed order's reservation holds when the order names no holdSeconds. */
  ORDER_HOLD_SECONDS: integer(1, 604_800).default(900),
  /** Standard Webhooks secrets (`whsec_…`) the PMS signs inbound webhooks with; space-separated while rotating. */
  INBOUND_WEBHOOK_SECRET: z
    .string()
    .transform((text) => text.split(/\s+/).filter(Boolean))
    .pipe(
      z
        .array(
          z
            .string()
            .regex(/^whsec_[A-Za-z0-9+/]{20,}={0,2}$/, 'each secret must be whsec_ followed by base64'),
        )
        .max(10),
    )
    .default([]),
  /**
   * Largest inbound webhook body, refused (413) before it is read or hashed. 256 KiB holds the
   * largest event the PMS may send in practice (an inventory.adjusted of 1000 lines is ~110 KB).
   */
  INBOUND_BODY_LIMIT_BYTES: integer(1024, 100 * 1024 * 1024).default(256 * 1024),
  /** Inbound webhooks with a bad signature per client IP per minute; beyond it, 429 without reading or hashing. */
  INBOUND_SIGNATURE_FAILURES_PER_MINUTE: integer(1, 1_000_000).default(30),
  /** Events older than this are pruned; a reader asking for older positions gets 410. */
  EVENT_RETENTION_DAYS: integer(1, 3650).default(30),
  /** Job attempts (`job_runs`, the `jobs` report) older than this are pruned hourly. */
  JOB_RUNS_RETENTION_DAYS: integer(1, 3660).default(90),
  /** SSE comment / WebSocket ping interval on open event streams. */
  EVENT_STREAM_HEARTBEAT_MS: integer(100, 300_000).default(15_000),
  /** Live streams look for new events at least this often (job completions wake them sooner). */
  EVENT_STREAM_POLL_MS: integer(20, 60_000).default(1000),
  /**
   * Every open stream's key is checked again this often: a revocation whose Redis message was lost,
   * or an expiry, closes the stream within it (a revocation announced on Redis closes it at once).
   */
  EVENT_STREAM_KEY_CHECK_MS: integer(100, 600_000).default(10_000),
  /** How often the outbox relay turns new events into webhook delivery jobs. */
  WEBHOOK_RELAY_INTERVAL_MS: integer(50, 60_000).default(500),
  /** Delays between delivery attempts, e.g. `5s,5m,30m`; attempts = entries + 1. */
  WEBHOOK_RETRY_SCHEDULE: durationList.default([
    5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000,
  ]),
  /** Each retry delay is spread by up to ± this fraction. */
  WEBHOOK_RETRY_JITTER: z.coerce.number().min(0).max(0.9).default(0.2),
  WEBHOOK_TIMEOUT_MS: integer(100, 120_000).default(15_000),
  // Redis resilience: what the workers rebuild when Redis loses its keys.
  /** How often each worker process checks that its job schedulers exist (also on every Redis reconnect). */
  SCHEDULER_CHECK_INTERVAL_MS: integer(100, 3_600_000).default(10_000),
  /** How often the sweep looks for pending webhook deliveries whose job was lost. */
  WEBHOOK_SWEEP_INTERVAL_MS: integer(100, 3_600_000).default(30_000),
  /** A pending delivery is swept only when its last attempt began longer ago than this (> WEBHOOK_TIMEOUT_MS). */
  WEBHOOK_SWEEP_AFTER_MS: integer(1000, 86_400_000).default(120_000),
  // Postgres guards per role (0 = off): the web process's reads and small writes, and the workers.
  DATABASE_API_STATEMENT_TIMEOUT_MS: integer(0, 86_400_000).default(15_000),
  DATABASE_API_LOCK_TIMEOUT_MS: integer(0, 86_400_000).default(5_000),
  DATABASE_API_IDLE_IN_TRANSACTION_TIMEOUT_MS: integer(0, 86_400_000).default(30_000),
  DATABASE_WORKER_STATEMENT_TIMEOUT_MS: integer(0, 86_400_000).default(60_000),
  DATABASE_WORKER_LOCK_TIMEOUT_MS: integer(0, 86_400_000).default(15_000),
  DATABASE_WORKER_IDLE_IN_TRANSACTION_TIMEOUT_MS: integer(0, 86_400_000).default(60_000),
  /** Off by default: webhook URLs that resolve to loopback, private, link-local or metadata addresses are refused. */
  WEBHOOK_ALLOW_PRIVATE_TARGETS: booleanFlag.default(false),
  /** The circuit breaker disables an endpoint after this many consecutive failed (exhausted) deliveries… */
  WEBHOOK_BREAKER_FAILED_DELIVERIES: integer(1, 100_000).default(50),
  /** …or when every attempt has failed for this long. */
  WEBHOOK_BREAKER_SPAN: duration.default(5 * 86_400_000),

  // Automatic reordering (docs/reordering.md): the reorder queue, the planner, the supplier API client.
  WORKER_CONCURRENCY_REORDER: integer(1, 200).default(5),
  /** How often the planner reads new stock movements from the event log and queues reorder checks. */
  REORDER_SCAN_INTERVAL_MS: integer(50, 600_000).default(1000),
  /** How often new ledger rows are folded into the report rollups (docs/reports.md), and how many skus a run takes. */
  REPORTS_COMPACT_INTERVAL_MS: integer(100, 600_000).default(2000),
  REPORTS_COMPACT_MAX_SKUS: integer(1, 1_000_000).default(2000),
  /** Compaction gives way while this many inventory jobs are ready (0: never), up to a lag (rollups.ts). */
  REPORTS_COMPACT_YIELD_READY: integer(0, 1_000_000).default(100),
  REPORTS_COMPACT_MAX_LAG_MS: integer(1000, 3_600_000).default(30_000),
  /** Days of sales the auto reorder point averages over, unless a rule names its own window. */
  REORDER_DEMAND_WINDOW_DAYS: integer(1, 365).default(28),
  /** A new draft purchase order is sent this long after its creation (lines added meanwhile go with it). */
  REORDER_SEND_DELAY_MS: integer(0, 7 * 86_400_000).default(0),
  /**
   * A draft still unsent this long after its send was due has lost its send job (Redis lost it):
   * the planner's scan queues the send again.
   */
  REORDER_DRAFT_RESEND_AFTER_MS: integer(1000, 86_400_000).default(60_000),
  /** Attempts of one purchase-order.send (network errors, 408, 429 and 5xx are tried again). */
  SUPPLIER_SEND_ATTEMPTS: integer(1, 50).default(8),
  /** First retry delay; doubles per attempt up to SUPPLIER_BACKOFF_MAX_MS, with jitter. */
  SUPPLIER_BACKOFF_MS: integer(1, 3_600_000).default(2000),
  SUPPLIER_BACKOFF_MAX_MS: integer(1, 86_400_000).default(600_000),
  /** Bound on one call to a supplier API (connect, send, answer). */
  SUPPLIER_TIMEOUT_MS: integer(100, 120_000).default(10_000),
  /** Off by default: supplier URLs on loopback, private, link-local or metadata addresses are refused. */
  SUPPLIER_ALLOW_PRIVATE_TARGETS: booleanFlag.default(false),
  // Operations (issue 11): read cache, metrics, alerts. See docs/operations.md.
  /** Serve product and stock reads through the cache; web and worker processes must agree. */
  CACHE_ENABLED: booleanFlag.default(true),
  /** Redis of the read cache (may run allkeys-lru); default: REDIS_URL. */
  CACHE_REDIS_URL: z.url({ protocol: /^rediss?$/ }).optional(),
  /** How long a product or stock entry is served before it is reloaded. */
  CACHE_TTL: duration.default(5 * 60_000),
  /** Same for list pages, which every product change invalidates. */
  CACHE_LIST_TTL: duration.default(30_000),
  /** After its TTL an entry is still served for this long while one reader reloads it (0s: never). */
  CACHE_GRACE: z
    .string()
    .transform((text, ctx) => {
      const ms = parseDuration(text);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: 'must be a duration such as 0s, 30s or 5m' });
        return z.NEVER;
      }
      return ms;
    })
    .default(60_000),
  /** Bounds of the in-process tier of each process: entries and bytes (least recently used go first). */
  CACHE_L1_MAX_ITEMS: integer(1, 10_000_000).default(10_000),
  CACHE_L1_MAX_BYTES: integer(1024, 4 * 1024 ** 3).default(64 * 1024 ** 2),
  /** How often the most-read skus are loaded into the cache, and how many. */
  CACHE_WARM_INTERVAL: duration.default(5 * 60_000),
  CACHE_WARM_TOP: integer(0, 100_000).default(500),
  /** Worker processes serve GET /metrics on HOST:METRICS_PORT (0: a free port; unset: no listener). */
  METRICS_PORT: integer(0, 65535).optional(),
  ALERT_EVALUATION_INTERVAL: duration.default(15_000),
  /** An open alert resolves only once its condition has been quiet this long (flapping keeps it open). */
  ALERT_HOLD_DOWN: duration.default(5 * 60_000),
  /** queue_backlog: more than this many waiting jobs in a queue… */
  ALERT_QUEUE_WAITING_MAX: integer(0, 100_000_000).default(1000),
  /** …for at least this long. */
  ALERT_QUEUE_WAITING_FOR: duration.default(2 * 60_000),
  /** queue_oldest_waiting: the oldest waiting job of a queue is older than this. */
  ALERT_OLDEST_WAITING_MAX: duration.default(5 * 60_000),
  /** job_failures: more jobs of one queue failed for good in the last minute than this. */
  ALERT_FAILED_PER_MINUTE: integer(0, 1_000_000).default(10),
  /** route_latency: p99 of a route over the window above this, once it has served enough requests. */
  ALERT_ROUTE_P99_MS: integer(1, 600_000).default(200),
  ALERT_ROUTE_WINDOW: duration.default(5 * 60_000),
  ALERT_ROUTE_MIN_REQUESTS: integer(1, 1_000_000).default(50),
});

export type Config = ReturnType<typeof parseConfig>;

/** Parses an environment (default: this process's) into the typed config, or throws ConfigError. */
export function parseConfig(env: Record<string, string | undefined> = process.env) {
  const result = envSchema.safeParse(env);
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map((issue) => `${issue.path.join('.') || '(environment)'}: ${issue.message}`),
    );
  }
  const c = result.data;
  if (!c.SECRETS_KEY && c.NODE_ENV !== 'production') c.SECRETS_KEY = readLocalSecretsKey(c.SECRETS_KEY_FILE);
  if (c.HTTP_HEADERS_TIMEOUT_MS > c.HTTP_REQUEST_TIMEOUT_MS) {
    throw new ConfigError(['HTTP_HEADERS_TIMEOUT_MS: must not exceed HTTP_REQUEST_TIMEOUT_MS']);
  }
  if (c.RATE_LIMIT_PER_SECOND > 0 && c.RATE_LIMIT_BURST < c.RATE_LIMIT_PER_SECOND) {
    throw new ConfigError(['RATE_LIMIT_BURST: must be at least RATE_LIMIT_PER_SECOND']);
  }
  if (c.NODE_ENV === 'production' && !c.SECRETS_KEY) {
    throw new ConfigError([
      'SECRETS_KEY: must be set in production (base64 of 32 random bytes: openssl rand -base64 32)',
    ]);
  }
  if (c.REDIS_SENTINELS && !c.REDIS_SENTINEL_NAME) {
    throw new ConfigError([
      'REDIS_SENTINEL_NAME: must be set with REDIS_SENTINELS (the monitored master name)',
    ]);
  }
  if (c.REDIS_CLUSTER_NODES && c.REDIS_SENTINELS) {
    throw new ConfigError([
      'REDIS_CLUSTER_NODES: set either REDIS_CLUSTER_NODES or REDIS_SENTINELS, not both',
    ]);
  }
  if (c.REDIS_CLUSTER_NODES && /[{}]/.test(c.QUEUE_PREFIX)) {
    throw new ConfigError([
      'QUEUE_PREFIX: must not contain { or } with REDIS_CLUSTER_NODES: Stockflow adds the hash tags itself ({QUEUE_PREFIX:<queue>})',
    ]);
  }
  if (c.WEBHOOK_SWEEP_AFTER_MS <= c.WEBHOOK_TIMEOUT_MS) {
    throw new ConfigError([
      'WEBHOOK_SWEEP_AFTER_MS: must be longer than WEBHOOK_TIMEOUT_MS, or the sweep could double an attempt in flight',
    ]);
  }
  return {
    ...c,
    database: {
      api: {
        statementTimeoutMs: c.DATABASE_API_STATEMENT_TIMEOUT_MS,
        lockTimeoutMs: c.DATABASE_API_LOCK_TIMEOUT_MS,
        idleInTransactionTimeoutMs: c.DATABASE_API_IDLE_IN_TRANSACTION_TIMEOUT_MS,
      },
      worker: {
        statementTimeoutMs: c.DATABASE_WORKER_STATEMENT_TIMEOUT_MS,
        lockTimeoutMs: c.DATABASE_WORKER_LOCK_TIMEOUT_MS,
        idleInTransactionTimeoutMs: c.DATABASE_WORKER_IDLE_IN_TRANSACTION_TIMEOUT_MS,
      },
    },
    concurrency: {
      products: c.WORKER_CONCURRENCY_PRODUCTS,
      maintenance: c.WORKER_CONCURRENCY_MAINTENANCE,
      images: c.WORKER_CONCURRENCY_IMAGES,
      webhooks: c.WORKER_CONCURRENCY_WEBHOOKS,
      inventory: c.WORKER_CONCURRENCY_INVENTORY,
      reorder: c.WORKER_CONCURRENCY_REORDER,
      orders: c.WORKER_CONCURRENCY_ORDERS,
      inbound: c.WORKER_CONCURRENCY_INBOUND,
    },
    images: imageSettings(c),
    cacheRedisUrl: c.CACHE_REDIS_URL ?? c.REDIS_URL,
    redisDurabilityCheck: c.REDIS_DURABILITY_CHECK ?? (c.NODE_ENV === 'production' ? 'refuse' : 'alert'),
    workerStalledIntervalMs: c.WORKER_STALLED_INTERVAL_MS ?? Math.min(c.WORKER_LOCK_DURATION_MS, 5000),
  };
}

/** The key `npm start` generated into SECRETS_KEY_FILE, if that file exists. */
function readLocalSecretsKey(file: string) {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError([`SECRETS_KEY_FILE: cannot read ${file}: ${(error as Error).message}`]);
  }
  const parsed = base64Key.safeParse(text);
  if (!parsed.success)
    throw new ConfigError([`SECRETS_KEY_FILE: ${file} must hold 32 bytes, base64-encoded`]);
  return parsed.data;
}

export type ImageOutputFormat = 'webp' | 'jpeg' | 'avif';

/** The image pipeline's settings, parsed once: variants as a list, the storage driver chosen. */
function imageSettings(c: z.infer<typeof envSchema>) {
  const variants = c.IMAGE_VARIANTS.split(',').map((pair) => {
    const [name, edge] = pair.split(':') as [string, string];
    return { name, longEdge: Number(edge) };
  });
  const names = new Set(variants.map((v) => v.name));
  if (names.size !== variants.length || variants.some((v) => v.longEdge < 1)) {
    throw new ConfigError(['IMAGE_VARIANTS: variant names must be unique and sizes at least 1']);
  }
  let cloudinary: { cloudName: string; apiKey: string; apiSecret: string; uploadPrefix: string } | undefined;
  if (c.CLOUDINARY_URL) {
    const url = new URL(c.CLOUDINARY_URL);
    cloudinary = {
      cloudName: url.hostname,
      apiKey: decodeURIComponent(url.username),
      apiSecret: decodeURIComponent(url.password),
      uploadPrefix: (url.searchParams.get('upload_prefix') ?? 'https://api.cloudinary.com').replace(
        /\/+$/,
        '',
      ),
    };
  }
  return {
    variants,
    formats: (c.IMAGE_AVIF ? ['webp', 'jpeg', 'avif'] : ['webp', 'jpeg']) as ImageOutputFormat[],
    storage: cloudinary ? ('cloudinary' as const) : ('local' as const),
    cloudinary,
  };
}
