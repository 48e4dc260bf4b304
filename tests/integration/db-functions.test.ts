import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createDb } from '../../src/db/knex.js';
import { migrateLatest } from '../../src/db/migrate.js';
import { listFunctionFiles, readFunctionFile } from '../../src/db/sql-functions.js';
import { cloneTemplate, dropDatabase, testDatabaseUrl } from '../helpers/databases.js';

/**
 * db/functions holds the current body of every trigger and SQL function: a migrated database (the
 * template, migrated from zero; or one migrated before a body was edited) runs exactly those, and
 * no function the folder does not hold.
 */

const database = `stockflow_test_${randomBytes(5).toString('hex')}`;
let db: Knex;
beforeAll(async () => {
  await cloneTemplate(inject('templateDatabase'), database);
  db = createDb({ DATABASE_URL: testDatabaseUrl(database), DATABASE_POOL_MAX: 2 });
});
afterAll(async () => {
  await db?.destroy();
  await dropDatabase(database);
});

/** Every function of the public schema (extensions' aside), as Postgres prints it back. */
async function definitions(db: Knex): Promise<[string, string][]> {
  const { rows } = await db.raw<{ rows: { name: string; definition: string }[] }>(
    `select p.proname as name, pg_get_functiondef(p.oid) as definition
     from pg_proc p
     where p.pronamespace = 'public'::regnamespace
       and not exists (select 1 from pg_depend d
                       where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
     order by 1, 2`,
  );
  return rows.map((r) => [r.name, r.definition]);
}

it('the migrated database has one function per file and no other', async () => {
  const live = await definitions(db);
  // One definition per name: a changed signature left no old overload behind.
  expect(live.map(([name]) => name)).toEqual(await listFunctionFiles());
});

it('a migrate run with nothing to apply still brings every function back to its file', async () => {
  const files = await definitions(db);
  // As a database migrated before the file of stockflow_stock_state was edited would run it.
  await db.raw(`create or replace function stockflow_stock_state(p_available bigint, p_threshold bigint)
    returns text language sql immutable as $$ select 'in_stock' $$`);
  expect(await definitions(db)).not.toEqual(files);
  expect(await migrateLatest(db)).toEqual([]);
  expect(await definitions(db)).toEqual(files);
});

it('each file defines the function it is named for and names the tables whose triggers fire it', async () => {
  const { rows } = await db.raw<{ rows: { trigger: string; table: string; name: string }[] }>(
    `select t.tgname as trigger, t.tgrelid::regclass::text as table, p.proname as name
     from pg_trigger t join pg_proc p on p.oid = t.tgfoid
     where not t.tgisinternal`,
  );
  expect(rows.length).toBeGreaterThan(30);
  for (const name of await listFunctionFiles()) {
    const sql = await readFunctionFile(name);
    expect([...sql.matchAll(/create or replace function (\w+)\(/g)].map((m) => m[1])).toEqual([name]);
    for (const row of rows.filter((r) => r.name === name)) {
      expect(sql, `${name}.sql should name ${row.table} (trigger ${row.trigger})`).toContain(row.table);
    }
  }
});
