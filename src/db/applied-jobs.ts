import type { Knex } from 'knex';
import { type JobContext, jobContextBindings, jobContextSelect } from './job-context.js';

interface JobToClaim {
  id: string;
  queue: string;
  name: string;
}

type Claim = { claimed: true } | { claimed: false; result: unknown };

/**
 * Claims job ids in `applied_jobs` inside the caller's transaction, in one statement and in id
 * order (two batches claiming the same ids cannot deadlock); a lone job is a batch of one.
 * `context` (a lone job's actor and job id, for triggers and the outbox) is set in the same round
 * trip: this is on every job's path. An id claimed the first time answers `{ claimed: true }`;
 * one applied before (a retry after a crash between commit and acknowledgement) answers its
 * stored result. A claim racing another transaction's waits on the primary key until that one
 * commits or rolls back.
 */
export async function claimJobs(
  db: Knex,
  jobs: JobToClaim[],
  context: JobContext = { actor: '' },
): Promise<Map<string, Claim>> {
  const { rows } = await db
    .raw<{ rows: { job_id: string; claimed: boolean }[] }>(
      `with settings as (select ${jobContextSelect}),
       k as (select * from unnest(?::text[], ?::text[], ?::text[]) as k (job_id, queue, name)),
       ins as (
         insert into applied_jobs (job_id, queue, name)
         select job_id, queue, name from k, settings order by job_id
         on conflict (job_id) do nothing
         returning job_id
       )
       select k.job_id, ins.job_id is not null as claimed from k left join ins using (job_id)`,
      [
        ...jobContextBindings(context),
        jobs.map((j) => j.id),
        jobs.map((j) => j.queue),
        jobs.map((j) => j.name),
      ],
    )
    // Prepared once per connection: Postgres skips parsing and planning on every job after the first.
    .options({ name: 'stockflow_claim_jobs' });
  const claims = new Map<string, Claim>();
  const taken = rows.filter((r) => !r.claimed).map((r) => r.job_id);
  // A separate statement: it sees claims committed while the insert above waited on them.
  const results = new Map<string, unknown>();
  if (taken.length > 0) {
    const stored = await db('applied_jobs').whereIn('job_id', taken).select('job_id', 'result');
    for (const row of stored as { job_id: string; result: unknown }[]) results.set(row.job_id, row.result);
  }
  for (const row of rows) {
    claims.set(
      row.job_id,
      row.claimed ? { claimed: true } : { claimed: false, result: results.get(row.job_id) ?? null },
    );
  }
  return claims;
}

/**
 * Stores the results of the applied jobs and drops the claims of the failed ones (a job that broke
 * a domain rule may run again), in one statement.
 */
export async function recordJobResults(
  db: Knex,
  applied: { id: string; result: unknown }[],
  failed: string[] = [],
): Promise<void> {
  // Not a prepared statement: planned for the ids at hand each time (a nested loop over the primary
  // key). Prepared, Postgres caches a generic plan for an unnest of unknown length, which on a
  // connection opened while applied_jobs was small is a hash join over a scan of the whole table,
  // kept as the table grows (32 million rows read in one bench:inventory run; 0.5 million without).
  await db.raw(
    `with recorded as (
         update applied_jobs a set result = t.result::jsonb
         from unnest(?::text[], ?::text[]) as t (job_id, result)
         where a.job_id = t.job_id
         returning 1
       ), dropped as (
         delete from applied_jobs where job_id = any(?::text[]) returning 1
       )
       select (select count(*) from recorded) as recorded, (select count(*) from dropped) as dropped`,
    [applied.map((a) => a.id), applied.map((a) => JSON.stringify(a.result ?? null)), failed],
  );
}

export async function pruneAppliedJobs(db: Knex, olderThanSeconds: number): Promise<number> {
  return db('applied_jobs')
    .where('applied_at', '<', db.raw(`now() - make_interval(secs => ?)`, [olderThanSeconds]))
    .delete();
}
