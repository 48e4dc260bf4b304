import type { Knex } from 'knex';

/**
 * Claims a job id inside the caller's transaction and sets the transaction-local actor and job id
 * that triggers and the outbox record (one round trip for both: this is on every job's path).
 * Returns `{ claimed: true }` the first time; afterwards (a retry after a crash between commit
 * and ack) returns the stored result. A run racing the first waits on the primary key until the
 * first commits or rolls back.
 */
export async function claimJob(
  db: Knex,
  job: { id: string; queue: string; name: string; actor: string },
): Promise<{ claimed: true } | { claimed: false; result: unknown }> {
  const inserted = await db
    .raw<{ rowCount: number }>(
      `insert into applied_jobs (job_id, queue, name)
       select ?, ?, ?
       from (select set_config('stockflow.actor', ?, true), set_config('stockflow.job_id', ?, true)) as settings
       on conflict (job_id) do nothing`,
      [job.id, job.queue, job.name, job.actor, job.id],
    )
    // Prepared once per connection: Postgres skips parsing and planning on every job after the first.
    .options({ name: 'stockflow_claim_job' });
  if (inserted.rowCount === 1) return { claimed: true };
  const row = await db('applied_jobs').where({ job_id: job.id }).first('result');
  return { claimed: false, result: row?.result ?? null };
}

export async function recordJobResult(db: Knex, jobId: string, result: unknown): Promise<void> {
  await db
    .raw('update applied_jobs set result = ?::jsonb where job_id = ?', [
      JSON.stringify(result ?? null),
      jobId,
    ])
    .options({ name: 'stockflow_record_job_result' });
}

export async function pruneAppliedJobs(db: Knex, olderThanSeconds: number): Promise<number> {
  return db('applied_jobs')
    .where('applied_at', '<', db.raw(`now() - make_interval(secs => ?)`, [olderThanSeconds]))
    .delete();
}
