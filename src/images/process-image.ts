import type { Knex } from 'knex';
import { deleteStagedUpload, loadStagedUpload, pruneStagedUploads } from '../db/image-uploads.js';
import { findVersionBySha, getImage, recordImageVersion, type UrlBuilder } from '../domain/images.js';
import { DomainError } from '../errors/domain-error.js';
import type { ProcessedImage } from '../queues/images.js';
import { isLastAttempt } from '../queues/job.js';
import { fetchSource } from './fetch-source.js';
import {
  type Failure,
  type ImageJobData,
  type ImageJobEnd,
  type ProcessPayload,
  recordFailure,
} from './image-failures.js';
import { storageFor } from './open-storage.js';
import { configureSharp, type PipelineStage, renderImage, sha256Hex, validateImage } from './pipeline.js';
import { type StoredRendition, urlBuilder } from './urls.js';

/** An image job as processing needs it: the worker's job context and the job's one transaction. */
export interface ImageJobRun extends ImageJobEnd {
  /** Runs `apply` in the job's transaction, claimed once in `applied_jobs` (the worker's applyOnce). */
  applyOnce<R>(apply: (trx: Knex.Transaction) => Promise<R>): Promise<R>;
}

const stagePercent: Record<PipelineStage, number> = {
  validated: 25,
  metadata: 50,
  variants: 75,
  stored: 100,
};

/**
 * Processes an image job; when the job fails for good (a broken rule, or its last attempt), the
 * failure is recorded (`image.failed`, staged bytes and orphaned renditions removed) before the
 * error goes on to BullMQ.
 */
export async function processImage(run: ImageJobRun, payload: ProcessPayload): Promise<ProcessedImage> {
  try {
    return await renderAndRecord(run, payload);
  } catch (error) {
    // A domain error never retries; anything else fails for good once the attempts run out.
    if (error instanceof DomainError || isLastAttempt(run.job))
      await recordFailure(run, payload, failureOf(run, error));
    throw error;
  }
}

function failureOf({ job }: ImageJobRun, error: unknown): Failure {
  return error instanceof DomainError
    ? { code: error.code, message: error.message, details: error.details }
    : {
        code: 'job_failed',
        message: `Processing failed after ${job.attemptsMade + 1} attempt(s)`,
        details: {},
      };
}

/**
 * The image pipeline: bytes (staged upload or guarded download) → validated → metadata →
 * variants → stored (remote uploads, outside any transaction) → one transaction that records the
 * version and the event. The same bytes already recorded for the image end the job early.
 */
async function renderAndRecord(run: ImageJobRun, payload: ProcessPayload): Promise<ProcessedImage> {
  const { deps, job, log } = run;
  const { config, db } = deps;
  const urls = urlBuilder(config);
  configureSharp(config.IMAGE_SHARP_CONCURRENCY, config.concurrency.images);
  const progress = (stage: PipelineStage) => job.updateProgress({ stage, percent: stagePercent[stage] });

  // Applied before (a crash between its commit and its end): answer as then, without the work.
  const applied = await db('applied_jobs').where({ job_id: job.id }).first('result');
  if (applied) return applied.result as ProcessedImage;

  let bytes: Buffer;
  let declared: string | undefined;
  let source: string;
  if (payload.source.kind === 'upload') {
    const { sha256 } = payload.source;
    if (await findVersionBySha(db, payload.imageId, sha256)) return deduplicated(run, payload, sha256, urls);
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
    if (await findVersionBySha(db, payload.imageId, sha256)) return deduplicated(run, payload, sha256, urls);
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

  const result = await run.applyOnce((trx) =>
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

/** These bytes are already a version of this image: record the job as applied and answer with the image. */
function deduplicated(
  run: ImageJobRun,
  payload: ProcessPayload,
  sha256: string,
  urls: UrlBuilder,
): Promise<ProcessedImage> {
  return run.applyOnce(async (trx) => {
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
