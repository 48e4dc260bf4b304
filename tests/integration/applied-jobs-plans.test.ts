import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { claimJobs, recordJobResults } from '../../src/db/applied-jobs.js';
import { createDb } from '../../src/db/knex.js';
import { cloneTemplate, dropDatabase, testDatabaseUrl } from '../helpers/databases.js';

/**
 * Every job's path claims its id and records its result in `applied_jobs`, a table that grows by a
 * row per job. A statement prepared on a connection (node-postgres named statements) gets a generic
 * plan cached after five runs, chosen for the table as it was then: the recording once read the
 * whole table on every batch (a hash join over a seq scan) after it had grown. Checked in one
 * transaction on one connection, with the transaction's own table counters.
 */
const database = `stockflow_test_plans_${randomBytes(5).toString('hex')}`;
let db: ReturnType<typeof createDb>;

beforeAll(async () => {
  await cloneTemplate(inject('templateDatabase'), database);
  db = createDb({ DATABASE_URL: testDatabaseUrl(database), DATABASE_POOL_MAX: 1 });
});
afterAll(async () => {
  await db?.destroy();
  await dropDatabase(database);
});

const rowsRead = async (trx: typeof db) => {
  const { rows } = await trx.raw<{ rows: { seq: string; idx: string }[] }>(
    `select coalesce(seq_tup_read, 0) as seq, coalesce(idx_tup_fetch, 0) as idx
     from pg_stat_xact_user_tables where relname = 'applied_jobs'`,
  );
  return { seq: Number(rows[0]!.seq), idx: Number(rows[0]!.idx) };
};

it('claiming and recording a batch reads the rows of its ids, not the table, after the table grew on the same connection', async () => {
  await db.transaction(async (trx) => {
    const batch = (n: number) =>
      Array.from({ length: 4 }, (_, i) => ({
        id: `plan-${n}-${i}`,
        queue: 'inventory',
        name: 'inventory.adjust',
      }));
    // Ten batches while the table is small: past the five custom plans of a prepared statement.
    for (let n = 0; n < 10; n++) {
      const jobs = batch(n);
      await claimJobs(trx, jobs);
      await recordJobResults(
        trx,
        jobs.map((j) => ({ id: j.id, result: { ok: true } })),
      );
    }
    await trx.raw(
      `insert into applied_jobs (job_id, queue, name)
       select 'grown-' || n, 'inventory', 'inventory.adjust' from generate_series(1, 50000) n`,
    );
    const before = await rowsRead(trx);
    for (let n = 10; n < 15; n++) {
      const jobs = batch(n);
      const claims = await claimJobs(trx, jobs);
      expect([...claims.values()]).toEqual(jobs.map(() => ({ claimed: true })));
      await recordJobResults(
        trx,
        jobs.slice(1).map((j) => ({ id: j.id, result: { ok: true } })),
        [jobs[0]!.id],
      );
    }
    const after = await rowsRead(trx);
    // 5 batches of 4 ids: a few dozen rows through the primary key, none by scanning 50,000.
    expect(after.seq - before.seq).toBeLessThan(1000);
    // What they wrote: each batch's three results recorded, its failed claim dropped.
    const { rows } = await trx.raw<{ rows: { recorded: number; dropped: number }[] }>(
      `select count(*) filter (where result is not null) as recorded,
              5 - count(*) filter (where job_id like '%-0') as dropped
       from applied_jobs where job_id in (select 'plan-' || n || '-' || i from generate_series(10, 14) n, generate_series(0, 3) i)`,
    );
    expect(rows[0]).toEqual({ recorded: 15, dropped: 5 });
  });
});
