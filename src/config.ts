import { z } from 'zod';

/**
 * The only reader of `process.env`. Every setting has a local default so `npm start` works on a
 * fresh machine; a bad value stops the process at start with a message naming the variable.
 */

const integer = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const booleanFlag = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((value) => value === 'true' || value === '1' || value === 'yes');

const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  HOST: z.string().min(1).default('0.0.0.0'),
  PORT: integer(0, 65535).default(3000),
  DATABASE_URL: z
    .url({ protocol: /^postgres(ql)?$/ })
    .default('postgres://postgres@127.0.0.1:5432/stockflow'),
  DATABASE_POOL_MAX: integer(1, 200).default(20),
  REDIS_URL: z.url({ protocol: /^rediss?$/ }).default('redis://127.0.0.1:6379'),
  /** BullMQ key prefix; wrap it in braces (`{stockflow}`) on Redis Cluster so a queue's keys share a slot. */
  QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_{}.-]{1,64}$/, 'letters, digits, _ . - { } only')
    .default('stockflow'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  LOG_PRETTY: booleanFlag.default(false),
  WORKER_CONCURRENCY_PRODUCTS: integer(1, 500).default(10),
  WORKER_CONCURRENCY_MAINTENANCE: integer(1, 50).default(1),
  WORKER_CONCURRENCY_INVENTORY: integer(1, 500).default(16),
  /** A worker's lock on an active job; a job whose worker died is taken over after about this long. */
  WORKER_LOCK_DURATION_MS: integer(1000, 600_000).default(30_000),
  /** How often the reservation expiry job runs, and how many reservations one run expires at most. */
  RESERVATION_EXPIRY_INTERVAL_MS: integer(500, 3_600_000).default(5000),
  RESERVATION_EXPIRY_BATCH: integer(1, 10_000).default(500),
  /** Attempts for a job whose failure is not a domain error (deadlock, lost connection, timeout). */
  JOB_ATTEMPTS: integer(1, 50).default(5),
  JOB_BACKOFF_MS: integer(1, 3_600_000).default(1000),
  /** Finished jobs stay answerable on GET /api/jobs/:id at least this long. */
  JOB_RETENTION_SECONDS: integer(60, 90 * 86_400).default(7 * 86_400),
  IDEMPOTENCY_TTL_SECONDS: integer(60, 30 * 86_400).default(86_400),
  /** How long a verified API key stays cached in a web process; revocations also flush it at once. */
  API_KEY_CACHE_SECONDS: integer(0, 3600).default(30),
  /** Bound on graceful shutdown: active jobs and in-flight requests get this long to finish. */
  SHUTDOWN_TIMEOUT_MS: integer(100, 600_000).default(30_000),
  BODY_LIMIT_BYTES: integer(1024, 100 * 1024 * 1024).default(1024 * 1024),
});

export type Config = ReturnType<typeof parseConfig>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Parses an environment (default: this process's) into the typed config, or throws ConfigError. */
export function parseConfig(env: Record<string, string | undefined> = process.env) {
  const result = envSchema.safeParse(env);
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map((issue) => `${issue.path.join('.') || '(environment)'}: ${issue.message}`),
    );
  }
  const c = result.data;
  return {
    ...c,
    concurrency: {
      products: c.WORKER_CONCURRENCY_PRODUCTS,
      maintenance: c.WORKER_CONCURRENCY_MAINTENANCE,
      inventory: c.WORKER_CONCURRENCY_INVENTORY,
    },
  };
}
