import type { Knex } from 'knex';
import { until } from './until.js';

/** Holds one row in a transaction of the test's own; resolves with it and its backend's pid. */
export async function lockRow(
  db: Knex,
  table: string,
  id: string,
): Promise<{ trx: Knex.Transaction; pid: number }> {
  const trx = await db.transaction();
  await trx(table).where({ id }).forUpdate().first();
  const { rows } = await trx.raw<{ rows: { pid: number }[] }>('select pg_backend_pid() as pid');
  return { trx, pid: rows[0]!.pid };
}

/**
 * Terminates the next backend found waiting on `lockPid`'s lock (one not in `terminated`), as an
 * operator or a failover would cut it off, and adds it to `terminated`.
 */
export async function terminateWaiting(db: Knex, lockPid: number, terminated: number[], what: string) {
  const { rows } = await until(
    what,
    () =>
      db.raw<{ rows: { pid: number }[] }>(
        `select pid from pg_stat_activity
         where datname = current_database() and ? = any (pg_blocking_pids(pid))
           and not (pid = any (?::int[]))`,
        [lockPid, terminated],
      ),
    (result) => result.rows.length > 0,
  );
  const pid = rows[0]!.pid;
  await db.raw('select pg_terminate_backend(?)', [pid]);
  terminated.push(pid);
}
