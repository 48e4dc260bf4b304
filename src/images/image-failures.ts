import type { Job } from 'bullmq';
import type { Knex } from 'knex';
import type { Config } from '../config.js';
import { deleteStagedUpload } from '../db/image-uploads.js';
import { setJobContext } from '../db/job-context.js';
import { appendEvent } from '../events/outbox.js';
import type { Logger } from '../log.js';
import { type imageJobs, processImagePayload } from '../queues/images.js';
import type { JobData, JobMeta, PayloadOf } from '../queues/job.js';
import { removeUnrecorded } from './rendition-files.js';
import type { StoredRendition } from './urls.js';

/**
 * What an image job keeps in Redis besides its payload: the renditions it is about to store, so
 * whoever ends the job (its last attempt, or the worker that fails it after it stalled) can remove
 * those no version records; and whether its failure was recorded already.
 */
export type ImageJobData = JobData & {
  storing?: Pick<StoredRendition, 'key' | 'format'>[];
  failureRecorded?: boolean;
};

export type ProcessPayload = PayloadOf<typeof imageJobs.process>;

export interface Failure {
  code: string;
  message: string;
  details: Record<string, unknown>;
}

/** An image job and what recording its end needs (the worker's job context). */
export interface ImageJobEnd {
  deps: { db: Knex; config: Config };
  job: Job<JobData>;
  meta: JobMeta;
  log: Logger;
}

/**
 * Writes `image.failed` in its own small transaction: the job's transaction (if it opened) has
 * rolled back, yet the PMS must hear about the failure. Also drops the staged bytes, and removes
 * the renditions the job stored that no version records. Runs once per job (marked in its data).
 */
export async function recordFailure(
  { deps, job, meta, log }: ImageJobEnd,
  payload: ProcessPayload,
  failure: Failure,
): Promise<void> {
  const data = job.data as ImageJobData;
  if (data.failureRecorded) return;
  try {
    await deps.db.transaction(async (trx) => {
      await setJobContext(trx, { actor: meta.actor, jobId: job.id });
      await appendEvent(trx, {
        type: 'image.failed',
        aggregate: { type: 'image', id: payload.imageId },
        data: {
          sku: payload.sku,
          imageId: payload.imageId,
          create: payload.create,
          source: payload.source.kind === 'url' ? payload.source.url : 'upload',
          attempts: job.attemptsMade + 1,
          error: failure,
        },
      });
      if (payload.source.kind === 'upload')
        await deleteStagedUpload(trx, payload.imageId, payload.source.sha256);
    });
    const recorded: ImageJobData = { ...data, failureRecorded: true };
    await job.updateData(recorded);
  } catch (writeError) {
    // The job fails with its own error all the same (rethrown by the caller); only the event is lost.
    log.error({ err: writeError }, 'could not record image.failed');
    return;
  }
  if (data.storing?.length) await removeUnrecorded(deps, payload.imageId, data.storing, log);
}

/**
 * An image job BullMQ fails without running it: it stalled more often than allowed (its workers
 * died mid-job), so no handler saw its end. Runs in the live worker that took the job, before the
 * job is moved to failed: if this process dies too, the job stalls again and the next worker runs
 * this again (once recorded, it is not written twice).
 */
export async function failImageJobWithoutRun(
  deps: ImageJobEnd['deps'] & { log: Logger },
  job: Job<JobData>,
): Promise<void> {
  if (job.name !== 'image.process') return;
  const parsed = processImagePayload.safeParse(job.data.payload);
  if (!parsed.success) return;
  const meta = job.data.meta ?? { actor: 'unknown' };
  const log = deps.log.child({ queue: 'images', job: job.name, jobId: job.id, requestId: meta.requestId });
  log.warn({ reason: job.deferredFailure }, 'image job failed without running: recording its failure');
  await recordFailure({ deps, job, meta, log }, parsed.data, {
    code: 'job_failed',
    message: `Processing stopped ${job.attemptsMade + 1} time(s) with its worker (stalled); the job was given up`,
    details: {},
  });
}
