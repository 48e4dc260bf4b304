import { afterAll, beforeAll, expect, it } from 'vitest';
import { checkPostgresRoom } from '../../src/connections.js';
import { createDb, type Db } from '../../src/db/knex.js';
import type { Logger } from '../../src/log.js';
import { adminQuery, testDatabaseUrl } from '../helpers/databases.js';

/** The start-up warning when a process's Postgres pool may not fit the server's max_connections. */
let db: Db;
const warnings: { fields: Record<string, unknown>; message: string }[] = [];
const log = {
  warn: (fields: Record<string, unknown>, message: string) => warnings.push({ fields, message }),
} as unknown as Logger;

beforeAll(() => {
  db = createDb({ DATABASE_URL: testDatabaseUrl('postgres'), DATABASE_POOL_MAX: 1 });
});
afterAll(async () => {
  await db.destroy();
});

it('warns when the pool cannot fit what the server allows, less the room kept for operators', async () => {
  const { rows } = await adminQuery(
    `select current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int as usable`,
  );
  const usable = rows[0].usable as number;

  const fits = await checkPostgresRoom(db, { DATABASE_POOL_MAX: 10, DATABASE_RESERVED_CONNECTIONS: 5 }, log);
  expect(fits?.fits).toBe(Math.floor((usable - 5) / 10));
  expect(warnings).toEqual([]);

  const tooBig = await checkPostgresRoom(
    db,
    { DATABASE_POOL_MAX: usable, DATABASE_RESERVED_CONNECTIONS: 5 },
    log,
  );
  expect(tooBig?.room).toBeLessThan(usable);
  expect(warnings).toHaveLength(1);
  expect(warnings[0]!.message).toMatch(/the Postgres pool may not fit: lower DATABASE_POOL_MAX/);
  expect(warnings[0]!.fields).toMatchObject({ poolMax: usable, reservedForOperators: 5 });
});
