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
