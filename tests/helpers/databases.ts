import pg from 'pg';
import { dropScratchDatabase } from '../../scripts/bench/scratch.js';

/** Tests run against the local server unless TEST_DATABASE_URL points elsewhere (its path is ignored). */
const baseUrl = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export function testDatabaseUrl(database: string): string {
  const url = new URL(baseUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

export function adminQuery(sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  return queryOnce(testDatabaseUrl('postgres'), sql, params);
}

async function queryOnce(url: string, sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(sql, params);
  } finally {
    await client.end();
  }
}

/** The session TimeZone every new connection to the database of `url` gets unless it sets its own. */
export async function setDatabaseTimeZone(url: string, timeZone: string): Promise<void> {
  const name = decodeURIComponent(new URL(url).pathname.slice(1));
  await queryOnce(
    url,
    `alter database ${pg.escapeIdentifier(name)} set timezone = ${pg.escapeLiteral(timeZone)}`,
  );
}

/** Clones the run's template into a fresh database for one test file. */
export async function cloneTemplate(template: string, name: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await adminQuery(`create database ${name} template ${template}`);
      return;
    } catch (error) {
      // 55006: another clone of the same template is in progress; try again shortly.
      if ((error as { code?: string }).code !== '55006' || attempt >= 20) throw error;
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
  }
}

/** Connections still open to a test database: anything left at teardown is a leak. */
export async function openConnections(database: string): Promise<number> {
  const { rows } = await adminQuery('select count(*)::int as n from pg_stat_activity where datname = $1', [
    database,
  ]);
  return rows[0].n as number;
}

export async function dropDatabase(name: string): Promise<void> {
  await dropScratchDatabase(testDatabaseUrl(name));
}
