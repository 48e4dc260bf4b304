import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Knex } from 'knex';

/**
 * `db/functions`: the current body of every trigger and SQL function, one `<function name>.sql`
 * each (db/functions/README.md). The files are not compiled: run from `src/db/` (tsx, vitest) they
 * sit two levels up, run from `dist/src/db/` three.
 */
const here = path.dirname(fileURLToPath(import.meta.url));
const fromSource = path.resolve(here, '../../db/functions');
export const functionsDir = existsSync(fromSource) ? fromSource : path.resolve(here, '../../../db/functions');

/** The names of the functions `db/functions` holds (its file names), sorted. */
export async function listFunctionFiles(): Promise<string[]> {
  return (await readdir(functionsDir))
    .filter((f) => f.endsWith('.sql'))
    .map((f) => f.slice(0, -'.sql'.length))
    .sort();
}

export function readFunctionFile(name: string): Promise<string> {
  return readFile(path.join(functionsDir, `${name}.sql`), 'utf8');
}

/**
 * (Re)creates these functions from their files (`create or replace function …`), in one
 * transaction (a savepoint inside a migration's). Every migrate run ends by loading them all; a
 * migration calls this itself when a function must change together with the schema.
 *
 * Bodies are not checked against the schema while loading (as pg_dump restores them): a database
 * migrating from zero runs older migrations with today's files, whose functions may name tables or
 * columns a later migration adds.
 */
export async function loadFunctions(db: Knex, names: string[]): Promise<void> {
  const sources = await Promise.all(names.map(readFunctionFile));
  await db.transaction(async (trx) => {
    // Two migrate runs replacing one function at once: Postgres fails one ("tuple concurrently updated").
    await trx.raw("select pg_advisory_xact_lock(hashtext('stockflow.functions'))");
    // A savepoint keeps a SET LOCAL until the outer transaction ends: put the setting back.
    const { rows } = await trx.raw<{ rows: { checks: string }[] }>(
      "select current_setting('check_function_bodies') as checks",
    );
    await trx.raw('set local check_function_bodies = off');
    for (const sql of sources) await trx.raw(sql);
    await trx.raw("select set_config('check_function_bodies', ?, true)", [rows[0]!.checks]);
  });
}
