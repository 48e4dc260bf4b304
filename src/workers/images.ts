import type { Job } from 'bullmq';
import type { Knex } from 'knex';
import type { Config } from '../config.js';
import { deleteStagedUpload, loadStagedUpload, pruneStagedUploads } from '../db/image-uploads.js';
import {
  deleteImage,
  findVersionBySha,
  getImage,
  listRenditions,
  recordImageVersion,
  rollbackImage,
  type UrlBuilder,
} from '../domain/images.js';
import { DomainError } from '../errors/domain-error.js';
import { appendEvent, setTransactionActor } from '../events/outbox.js';
import { fetchSource } from '../images/fetch-source.js';
import {
  configureSharp,
  type PipelineStage,
  renderImage,
  sha256Hex,
  validateImage,
} from '../images/pipeline.js';
import { type ImageStorage, openImageStorage } from '../images/storage.js';
import { deliveryUrl, type StoredRendition } from '../images/urls.js';
import { type imageJobs, type ProcessedImage, processImagePayload } from '../queues/images.js';
import type { JobData, PayloadOf } from '../queues/job.js';
import { applyOnce } from './apply-once.js';
import type { JobContext, QueueHandlers } from './processor.js';

type ProcessPayload = PayloadOf<typeof imageJobs.process>;

const stagePercent: Record<PipelineStage, number> = {
  validated: 25,
  metadata: 50,
  variants: 75,
  stored: 100,
};

// One storage driver per configuration (tests run several configurations in one process).
const storages = new WeakMap<Config, Promise<ImageStorage>>();
function storageFor(config: Config): Promise<ImageStorage> {
  let storage = storages.get(config);
  if (!storage) {
    storage = openImageStorage(config);
    storages.set(config, storage);
  }
  return storage;
}

const urlBuilder =
  (config: Config): UrlBuilder =>
  (driver, rendition) =>
    deliveryUrl(config, driver, rendition);

/**
 * What an image job keeps in Redis besides its payload: the renditions it is about to store, so
 * whoever ends the job (its last attempt, or the worker that fails it after it stalled) can remove
 * those no version records; and whether its failure was recorded already.
 */
type ImageJobData = JobData & {
  storing?: Pick<StoredRendition, 'key' | 'format'>[];
  failureRecorded?: boolean;
};

export const imageHandlers = {
  'image.process': async (ctx, payload) => {
    try {
      return await processImage(ctx, payload);
    } catch (error) {
      if (isFinalAttempt(ctx, error)) await recordFailure(ctx, payload, failureOf(ctx, error));
      throw error;
    }
  },
  'image.rollback': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => rollbackImage(trx, payload, urlBuilder(deps.config))),
  'image.delete': async ({ deps, job, meta, log }, payload) => {
    const result = await applyOnce(deps.db, job, meta, (trx) => deleteImage(trx, payload));
    // After commit, and again on a retry: removing files that are already gone is a no-op.
    const storage = await storageFor(deps.config);
    for (const version of await listRenditions(deps.db, payload.imageId)) {
      if (version.storage !== storage.driver) {
        log.warn(
          { storage: version.storage, imageId: payload.imageId },
          'renditions left on a storage no longer configured',
        );
        continue;
      }
      await storage.remove(version.renditions);
    }
    return result;
  },
} satisfies QueueHandlers<'images'>;

/**
 * The image pipeline: bytes (staged upload or guarded download) → validated → metadata →
 * variants → stored (remote uploads, outside any transaction) → one transaction that records the
 * version and the event. The same bytes already recorded for the image end the job early.
 */
async function processImage(ctx: JobContext, payload: ProcessPayload): Promise<ProcessedImage> {
  const { deps, job, meta, log } = ctx;
  const { config, db } = deps;
  const urls = urlBuilder(config);
  configureSharp(config.IMAGE_SHARP_CONCURRENCY, config.concurrency.images);
  const progress = (stage: PipelineStage) => job.updateProgress({ stage, percent: stagePercent[stage] });

  const applied = await db('applied_jobs').where({ job_id: job.id }).first('result');
  if (applied) return applied.result as ProcessedImage;

  let bytes: Buffer;
  let declared: string | undefined;
  let source: string;
  if (payload.source.kind === 'upload') {
    const { sha256 } = payload.source;
    if (await isKnownVersion(db, payload, sha256)) return deduplicated(ctx, payload, sha256, urls);
    const staged = await loadStagedUpload(db, payload.imageId, sha256);
    if (!staged) {
      throw new DomainError('not_found', 'The uploaded bytes are no longer staged; upload them again', {
        imageId: payload.imageId,
        sha256,
      });
    }
    bytes = staged.bytes;
    declared = payload.source.declaredType ?? staged.declaredType ?? undefined;
    source = 'upload';
  } else {
    const fetched = await fetchSource(payload.source.url, {
      allowPrivate: config.IMAGE_ALLOW_PRIVATE_SOURCES,
      maxBytes: config.IMAGE_MAX_UPLOAD_BYTES,
      connectTimeoutMs: config.IMAGE_FETCH_CONNECT_TIMEOUT_MS,
      totalTimeoutMs: config.IMAGE_FETCH_TIMEOUT_MS,
    });
    bytes = fetched.bytes;
    declared = fetched.contentType;
    source = payload.source.url;
    const sha256 = sha256Hex(bytes);
    if (await isKnownVersion(db, payload, sha256)) return deduplicated(ctx, payload, sha256, urls);
  }

  const validated = await validateImage(bytes, declared, config.IMAGE_MAX_PIXELS);
  await progress('validated');
  const { original, renditions } = await renderImage(
    bytes,
    validated,
    {
      variants: config.images.variants,
      formats: config.images.formats,
      maxPixels: config.IMAGE_MAX_PIXELS,
      timeoutSeconds: config.IMAGE_TIMEOUT_SECONDS,
    },
    progress,
  );

  const storage = await storageFor(config);
  // Invalidate CDN copies whenever an upload may overwrite: a retry, or a new version of an image.
  const invalidate = job.attemptsMade > 0 || !payload.create;
  const base = `${payload.sku}/${payload.imageId}/${original.sha256.slice(0, 16)}`;
  // Before the first byte is stored: if this process dies from here on, the job's end cleans up.
  const storing: ImageJobData = {
    ...job.data,
    storing: renditions.map((r) => ({
      key: storage.storedKey(`${base}/${r.variant}`, r.format),
      format: r.format,
    })),
  };
  await job.updateData(storing);
  const stored: StoredRendition[] = await Promise.all(
    renditions.map(async (r) => {
      const put = await storage.put({
        key: `${base}/${r.variant}`,
        format: r.format,
        body: r.body,
        invalidate,
      });
      return {
        variant: r.variant,
        format: r.format,
        width: r.width,
        height: r.height,
        bytes: r.body.length,
        key: put.key,
        version: put.version,
      };
    }),
  );

  const result = await applyOnce(db, job, meta, (trx) =>
    recordImageVersion(
      trx,
      {
        sku: payload.sku,
        imageId: payload.imageId,
        create: payload.create,
        fields: { alt: payload.alt, position: payload.position, role: payload.role },
        version: { ...original, source, storage: storage.driver, renditions: stored },
      },
      urls,
    ),
  );
  await progress('stored');
  const pruned = await pruneStagedUploads(db, 2 * config.JOB_RETENTION_SECONDS);
  if (pruned > 0) log.info({ pruned }, 'pruned staged uploads no job can still want');
  return result;
}

/** Dedupe: these bytes were processed for this image before (content hash as the key). */
function isKnownVersion(db: Knex, payload: ProcessPayload, sha256: string): Promise<boolean> {
  return findVersionBySha(db, payload.imageId, sha256);
}

/** These bytes are already a version of this image: record the job as applied and answer with the image. */
function deduplicated(
  { deps, job, meta }: JobContext,
  payload: ProcessPayload,
  sha256: string,
  urls: UrlBuilder,
): Promise<ProcessedImage> {
  return applyOnce(deps.db, job, meta, async (trx) => {
    await deleteStagedUpload(trx, payload.imageId, sha256);
    const image = await getImage(trx, payload.sku, payload.imageId, urls);
    if (!image) {
      throw new DomainError(
        'not_found',
        `Image ${payload.imageId} of product ${payload.sku} does not exist`,
        {
          sku: payload.sku,
          imageId: payload.imageId,
        },
      );
    }
    return { image, deduplicated: true };
  });
}

/** A domain error never retries; anything else fails for good once the attempts run out. */
function isFinalAttempt({ job }: JobContext, error: unknown): boolean {
  return error instanceof DomainError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
}

type Failure = { code: string; message: string; details: Record<string, unknown> };

function failureOf({ job }: JobContext, error: unknown): Failure {
  return error instanceof DomainError
    ? { code: error.code, message: error.message, details: error.details }
    : {
        code: 'job_failed',
        message: `Processing failed after ${job.attemptsMade + 1} attempt(s)`,
        details: {},
      };
}

/**
 * Writes `image.failed` in its own small transaction: the job's transaction (if it opened) has
 * rolled back, yet the PMS must hear about the failure. Also drops the staged bytes, and removes
 * the renditions the job stored that no version records. Runs once per job (marked in its data).
 */
async function recordFailure(
  { deps, job, meta, log }: JobContext,
  payload: ProcessPayload,
  failure: Failure,
) {
  const data = job.data as ImageJobData;
  if (data.failureRecorded) return;
  try {
    await deps.db.transaction(async (trx) => {
      await setTransactionActor(trx, meta.actor, job.id);
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
    log.error({ err: writeError }, 'could not record image.failed');
    return;
  }
  if (data.storing?.length) await removeUnrecorded(deps, payload.imageId, data.storing, log);
}

/** Removes renditions a failed job stored (or began to) that no version of the image records. */
async function removeUnrecorded(
  deps: JobContext['deps'],
  imageId: string,
  storing: Pick<StoredRendition, 'key' | 'format'>[],
  log: JobContext['log'],
) {
  const storage = await storageFor(deps.config);
  const recorded = new Set(
    (await listRenditions(deps.db, imageId)).flatMap((v) => v.renditions.map((r) => r.key)),
  );
  const orphans = storing.filter((r) => !recorded.has(r.key));
  try {
    await storage.remove(orphans);
    if (orphans.length > 0) log.info({ renditions: orphans.length }, 'removed renditions of a failed job');
  } catch (error) {
    log.warn(
      { err: error, renditions: orphans.map((r) => r.key) },
      'could not remove renditions of a failed job',
    );
  }
}

/**
 * An image job BullMQ fails without running it: it stalled more often than allowed (its workers
 * died mid-job), so no handler saw its end. Runs in the live worker that took the job, before the
 * job is moved to failed: if this process dies too, the job stalls again and the next worker runs
 * this again (once recorded, it is not written twice).
 */
export async function failImageJobWithoutRun(deps: JobContext['deps'], job: Job<JobData>): Promise<void> {
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
