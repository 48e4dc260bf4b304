import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Knex } from 'knex';
import pg from 'pg';
import type { Config } from '../config.js';
import { ServiceUnreachableError } from '../errors/service-unreachable-error.js';
import { createDb } from './knex.js';
import { listFunctionFiles, loadFunctions } from './sql-functions.js';

/** `db/migrations`, found relative to this file both in `src/` (tsx, vitest) and in `dist/src/`. */
const migrationsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../db/migrations');

interface MigrationModule {
  up(db: Knex): Promise<void>;
  down(db: Knex): Promise<void>;
}

/**
 * A knex migration source that imports `db/migrations/*.{ts,js}` itself, so the same migrations
 * run under vitest, tsx and compiled `dist/` alike (knex's own loader cannot import `.ts`). Tests of an
 * upgrade roll a migration back through it (`db.migrate.down({ migrationSource })`).
 */
export const migrationSource: Knex.MigrationSource<string> = {
  async getMigrations() {
    const files = await readdir(migrationsDir);
    return files.filter((f) => /^\d+_[\w-]+\.(ts|js)$/.test(f) && !f.endsWith('.d.ts')).sort();
  },
  getMigrationName(file) {
    return file.replace(/\.(ts|js)$/, '');
  },
  async getMigration(file) {
    return (await import(pathToFileURL(path.join(migrationsDir, file)).href)) as MigrationModule;
  },
};

/**
 * Applies pending migrations, then loads every function of `db/functions`: whatever a migration
 * left, a migrated database runs the bodies of the files (so an edited body needs no migration).
 */
export async function migrateLatest(db: Knex): Promise<string[]> {
  const [, applied] = (await db.migrate.latest({ migrationSource })) as [number, string[]];
  await loadFunctions(db, await listFunctionFiles());
  return applied;
}

export async function migrateRollbackAll(db: Knex): Promise<void> {
  await db.migrate.rollback({ migrationSource }, true);
}

/** Creates the database named in `url` when it does not exist yet. Returns true if it created it. */
export async function ensureDatabase(url: string): Promise<boolean> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.slice(1));
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString(), connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    const found = await client.query('select 1 from pg_database where datname = $1', [name]);
    if (found.rowCount) return false;
    await client.query(`create database ${pg.escapeIdentifier(name)}`);
    return true;
  } catch (error) {
    // Another process created it between our check and our create.
    if ((error as { code?: string }).code === '42P04') return false;
    throw error;
  } finally {
    await client.end();
  }
}

/**
 * What `npm run migrate` and `npm start` do first: create the database if it is missing, then
 * apply pending migrations. An unreachable server is reported as such.
 */
export async function prepareDatabase(config: Config): Promise<{ created: boolean; applied: string[] }> {
  let created: boolean;
  try {
    created = await ensureDatabase(config.DATABASE_URL);
  } catch (error) {
    const code = (error as { code?: string }).code;
    // Connection-level failures (refused, DNS, timeout) mean the server is not there.
    if (!code || /^(E[A-Z]+|08\d{3}|57P03)$/.test(code) || /timeout/i.test(String(error))) {
      throw new ServiceUnreachableError('PostgreSQL', config.DATABASE_URL, error);
    }
    throw error;
  }
  const db = createDb(config);
  try {
    return { created, applied: await migrateLatest(db) };
  } finally {
    await db.destroy();
  }
}
