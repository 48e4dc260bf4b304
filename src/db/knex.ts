import knex, { type Knex } from 'knex';
import pg from 'pg';
import type { Config } from '../config.js';

// int8 (bigint) columns such as events.seq and money amounts fit a JS number for any realistic
// value (< 2^53); returning them as numbers keeps the API from emitting numeric strings.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number.parseInt(value, 10));

export type Db = Knex;

/** Who uses a pool: the web process (reads, small writes) or the workers; scripts set no guards. */
export type DbRole = 'api' | 'worker';

export interface DbGuards {
  statementTimeoutMs: number;
  lockTimeoutMs: number;
  idleInTransactionTimeoutMs: number;
}

/**
 * Session settings that end what would otherwise hold everyone up: a statement running too long,
 * a wait for a lock, a transaction left open and idle (its locks and the event seq it drew would
 * freeze the feed, the streams and the relay). Sent in the startup packet: no extra round trip.
 */
export function guardOptions(guards: DbGuards): string {
  return [
    `-c statement_timeout=${guards.statementTimeoutMs}`,
    `-c lock_timeout=${guards.lockTimeoutMs}`,
    `-c idle_in_transaction_session_timeout=${guards.idleInTransactionTimeoutMs}`,
  ].join(' ');
}

export function createDb(
  config: Pick<Config, 'DATABASE_URL' | 'DATABASE_POOL_MAX'> & { database?: Config['database'] },
  role?: DbRole,
): Db {
  const guards = role && config.database?.[role];
  return knex({
    client: 'pg',
    connection: {
      connectionString: config.DATABASE_URL,
      connectionTimeoutMillis: 5000,
      ...(guards ? { options: guardOptions(guards) } : {}),
    },
    pool: { min: 0, max: config.DATABASE_POOL_MAX },
    acquireConnectionTimeout: 10_000,
    // A failed query's error names the statement, never its bound values (a staged image is 20 MiB).
    compileSqlOnError: false,
    // knex also prints every failed connection attempt with its stack; the caller reports the error.
    log: {
      warn(message: string) {
        if (!message.startsWith('Acquire connection error')) process.stderr.write(`knex: ${message}\n`);
      },
    },
  });
}

/** Postgres SQLSTATE codes the domain reacts to. */
export const pgErrorCodes = {
  uniqueViolation: '23505',
  checkViolation: '23514',
  foreignKeyViolation: '23503',
  raiseException: 'P0001',
  /** The database named in the connection string does not exist. */
  invalidCatalogName: '3D000',
  /** A table the code needs is not there: migrations have not run. */
  undefinedTable: '42P01',
} as const;

export function isPgError(error: unknown, code: string, constraint?: string): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const e = error as { code?: unknown; constraint?: unknown };
  return e.code === code && (constraint === undefined || e.constraint === constraint);
}

/**
 * Whether an error says a backing service is away rather than that our code is wrong: Postgres
 * restarting, shutting down or refusing connections (SQLSTATE class 08, 57P01-57P03, 53300), a
 * connection refused, reset or cut, or no pooled connection within the acquire timeout. Such a
 * request is answered 503 with Retry-After (repeat it), never 500; a worker's transaction is tried
 * again (`transactionRetried`).
 */
export function isServiceUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = String((error as { code?: unknown }).code ?? '');
  return (
    code.startsWith('08') ||
    ['57P01', '57P02', '57P03', '53300'].includes(code) ||
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTCONN'].includes(code) ||
    /Connection terminated|terminating connection|Timeout acquiring a connection/i.test(error.message)
  );
}

/**
 * Runs `work` in a transaction, and in a new one after each of `delaysMs` while it fails because
 * Postgres is away (`isServiceUnavailable`: backends terminated, a restart, a lost connection).
 * For a transaction that records what has already happened outside Postgres (a webhook answered):
 * a short outage must not lose it. `again` is true on every try after the first, whose commit may
 * have succeeded with its answer lost: the work must then find what it wrote and not write it twice.
 */
export async function transactionRetried<T>(
  db: Knex,
  work: (trx: Knex.Transaction, again: boolean) => Promise<T>,
  delaysMs: readonly number[],
): Promise<T> {
  for (let tried = 0; ; tried++) {
    try {
      return await db.transaction((trx) => work(trx, tried > 0));
    } catch (error) {
      if (tried >= delaysMs.length || !isServiceUnavailable(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, delaysMs[tried]));
    }
  }
}
