import { Redis } from 'ioredis';
import type { Config } from './config.js';
import { createDb, type Db, isPgError, pgErrorCodes } from './db/knex.js';
import type { Logger } from './log.js';

/** A backing service could not be reached at start: entry points print this, without a stack trace. */
export class ServiceUnreachableError extends Error {
  constructor(
    readonly service: 'PostgreSQL' | 'Redis',
    readonly url: string,
    cause: unknown,
  ) {
    super(
      `${service} is not reachable at ${redactUrl(url)} (${describe(cause)}).\n` +
        `Start it with \`bash scripts/services.sh\`, or point ${service === 'PostgreSQL' ? 'DATABASE_URL' : 'REDIS_URL'} at a running server.`,
    );
    this.name = 'ServiceUnreachableError';
  }
}

/** The server answered, but the database DATABASE_URL names does not exist on it. */
export class DatabaseMissingError extends Error {
  constructor(readonly url: string) {
    super(
      `The database ${databaseName(url)} does not exist on the PostgreSQL server at ${redactUrl(url)}.\n` +
        'Create it and its tables with `npm run migrate` (`npm start` does this too), or point DATABASE_URL at an existing database.',
    );
    this.name = 'DatabaseMissingError';
  }
}

const databaseName = (url: string) => {
  try {
    return `"${decodeURIComponent(new URL(url).pathname.slice(1))}"`;
  } catch {
    return '(unparseable url)';
  }
};

function describe(cause: unknown): string {
  if (cause instanceof AggregateError && cause.errors.length) return describe(cause.errors[0]);
  if (cause instanceof Error) return (cause as { code?: string }).code ?? cause.message;
  return String(cause);
}

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable url)';
  }
}

export async function openPostgres(config: Config): Promise<Db> {
  const db = createDb(config);
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

/** BullMQ loses jobs if Redis may evict keys: warn loudly when the policy is anything but noeviction. */
export async function warnUnlessNoEviction(redis: Redis, log: Logger): Promise<void> {
  try {
    const [, policy] = (await redis.config('GET', 'maxmemory-policy')) as [string, string];
    if (policy !== 'noeviction') {
      log.warn({ policy }, 'Redis maxmemory-policy is not noeviction: queued jobs can be evicted and lost');
    }
  } catch (error) {
    // Managed Redis services often forbid CONFIG; say so instead of failing.
    log.warn({ err: error }, 'could not read Redis maxmemory-policy; make sure it is noeviction');
  }
}
