import type { Job } from 'bullmq';
import type { Knex } from 'knex';
import { claimJob, recordJobResult } from '../db/applied-jobs.js';
import type { JobMeta } from '../queues/job.js';

/**
 * The one place a job's transaction opens. Inside it: the actor and job id are set for triggers
 * and the outbox, the job id is claimed in `applied_jobs`, and the change is applied. If the job
 * was applied before, its stored result is returned and nothing changes. Any error rolls it all back.
 */
export async function applyOnce<R>(
  db: Knex,
  job: Pick<Job, 'id' | 'queueName' | 'name'>,
  meta: JobMeta,
  apply: (trx: Knex.Transaction) => Promise<R>,
): Promise<R> {
  const jobId = job.id!;
  return db.transaction(async (trx) => {
    const claim = await claimJob(trx, { id: jobId, queue: job.queueName, name: job.name, actor: meta.actor });
    if (!claim.claimed) return claim.result as R;
    const result = await apply(trx);
    await recordJobResult(trx, jobId, result);
    return result;
  });
}
