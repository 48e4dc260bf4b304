import { createHash, randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import multipart from '@fastify/multipart';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import {
  deleteStagedUpload,
  discardUploadChunks,
  finishStagedUpload,
  stageUploadChunk,
} from '../../db/image-uploads.js';
import { findImage, findVersionBySha, getImage, listImages, listImageVersions } from '../../domain/images.js';
import { getProduct } from '../../domain/products.js';
import { HttpProblem } from '../../errors/http-problem.js';
import { urlBuilder } from '../../images/urls.js';
import { imageJobs } from '../../queues/images.js';
import { deletedImageSchema, imageSchema, imageVersionSchema } from '../../schemas/images.js';
import { skuSchema } from '../../schemas/products.js';
import { assignScope, principalOf } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import {
  imageIntakeRequestBody,
  readUploadIntake,
  readUrlIntake,
  type UploadIntake,
} from '../image-intake.js';
import { takeUploadSlot } from '../stream-caps.js';
import { jobHandleSchema, submitJob } from '../submit-job.js';

const skuParams = z.object({ sku: skuSchema });
const imageParams = z.object({ sku: skuSchema, imageId: z.uuid() });
const processedSchema = z.object({ image: imageSchema, deduplicated: z.boolean() });
const uploadDescription =
  'Body: multipart/form-data with a `file` part (at most IMAGE_MAX_UPLOAD_BYTES, default 20 MiB) and ' +
  'optional `alt`, `position`, `role` (main|gallery) fields; or JSON `{ sourceUrl, alt?, position?, role? }`. ' +
  'A file whose first bytes are not a JPEG, PNG, WebP, AVIF, GIF or TIFF answers 415, an oversized one 413.';

/** With an Idempotency-Key, a replayed create must name the same image: derive its id from the key. */
function newImageId(request: FastifyRequest): string {
  const key = request.headers['idempotency-key'];
  if (typeof key !== 'string' || key.length === 0) return randomUUID();
  const hex = createHash('sha256')
    .update(`${principalOf(request).id}\n${request.method} ${request.url.split('?')[0]}\n${key}`)
    .digest('hex');
  // Shaped as a version-4 UUID so it passes the same validation as a random one.
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${((Number.parseInt(hex[16]!, 16) & 3) | 8).toString(16)}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

export async function registerImageRoutes(root: FastifyInstance, deps: ApiDeps): Promise<void> {
  const { config } = deps;
  const urls = urlBuilder(config);

  if (config.images.storage === 'local') {
    // Files are named by content hash and never rewritten: caches may keep them for a year.
    const mediaRoot = path.resolve(config.MEDIA_DIR);
    await mkdir(mediaRoot, { recursive: true });
    await root.register(async (media) => {
      // Processed renditions are public by design: their URLs go to shop pages and CDNs.
      assignScope(media, 'public');
      await media.register(fastifyStatic, {
        root: mediaRoot,
        prefix: '/media/',
        decorateReply: false,
        index: false,
        list: false,
        dotfiles: 'deny',
        immutable: true,
        maxAge: '365d',
      });
    });
  }

  const intakeLimits = {
    maxBytes: config.IMAGE_MAX_UPLOAD_BYTES,
    allowPrivateSources: config.IMAGE_ALLOW_PRIVATE_SOURCES,
  };
  // Multipart parsing only in this scope: every other route keeps the 1 MiB JSON body limit.
  await root.register(async (scope) => {
    await scope.register(multipart, { limits: { fileSize: config.IMAGE_MAX_UPLOAD_BYTES } });
    const app = scope.withTypeProvider<ZodTypeProvider>();
    const tags = ['images'];

    /**
     * Reads the body and enqueues image.process. An upload takes a slot of the upload caps before
     * its body is read (429 when they are full), streams into its staging place in pieces, and
     * gives the slot back once it is staged; a URL source is downloaded by the job.
     */
    const submitProcess = async (
      request: FastifyRequest,
      reply: Parameters<typeof submitJob>[2],
      target: { sku: string; imageId: string; create: boolean },
    ) => {
      if (!request.isMultipart()) {
        const intake = readUrlIntake(request, intakeLimits);
        return submitJob(
          deps,
          request,
          reply,
          imageJobs.process,
          { ...target, source: { kind: 'url', url: intake.url }, ...intake.fields },
          { successStatus: target.create ? 201 : 200 },
        );
      }
      const release = takeUploadSlot(deps.limits.uploads, request);
      const uploadId = randomUUID();
      let intake: UploadIntake;
      let staged = false;
      try {
        intake = await readUploadIntake(request, intakeLimits, (seq, bytes) =>
          stageUploadChunk(deps.db, uploadId, seq, bytes),
        );
        // Bytes this image already has need no staging: the job answers with the existing version.
        if (await findVersionBySha(deps.db, target.imageId, intake.sha256)) {
          await discardUploadChunks(deps.db, uploadId);
        } else {
          staged = await finishStagedUpload(deps.db, {
            uploadId,
            imageId: target.imageId,
            sha256: intake.sha256,
            declaredType: intake.declaredType,
          });
        }
      } catch (error) {
        await discardUploadChunks(deps.db, uploadId).catch(() => undefined);
        throw error;
      } finally {
        release();
      }
      const { sha256 } = intake;
      try {
        await submitJob(
          deps,
          request,
          reply,
          imageJobs.process,
          {
            ...target,
            source: { kind: 'upload', sha256, declaredType: intake.declaredType },
            ...intake.fields,
          },
          {
            successStatus: target.create ? 201 : 200,
            dedupeKey: `${target.imageId.replaceAll('-', '')}-${sha256}`,
          },
        );
      } catch (error) {
        if (staged && !reply.sent)
          await deleteStagedUpload(deps.db, target.imageId, sha256).catch(() => undefined);
        throw error;
      }
    };

    const requireProduct = async (sku: string) => {
      if (!(await getProduct(deps.db, sku))) {
        throw new HttpProblem(404, 'not_found', `Product ${sku} does not exist`);
      }
    };
    const requireImage = async (sku: string, imageId: string) => {
      if (!(await findImage(deps.db, sku, imageId))) {
        throw imageNotFound(sku, imageId);
      }
    };

    app.post(
      '/api/pms/products/:sku/images',
      {
        config: { scope: 'pms', openapi: { requestBody: imageIntakeRequestBody } },
        schema: {
          tags,
          summary: 'Add an image to a product (job image.process; version 1)',
          description: uploadDescription,
          consumes: ['multipart/form-data', 'application/json'],
          params: skuParams,
          response: { 202: jobHandleSchema, 201: processedSchema },
        },
      },
      async (request, reply) => {
        await requireProduct(request.params.sku);
        return submitProcess(request, reply, {
          sku: request.params.sku,
          imageId: newImageId(request),
          create: true,
        });
      },
    );

    app.post(
      '/api/pms/products/:sku/images/:imageId/versions',
      {
        config: { scope: 'pms', openapi: { requestBody: imageIntakeRequestBody } },
        schema: {
          tags,
          summary:
            'Upload a new version of an image (job image.process); the same bytes again return the existing version',
          description: uploadDescription,
          consumes: ['multipart/form-data', 'application/json'],
          params: imageParams,
          response: { 202: jobHandleSchema, 200: processedSchema },
        },
      },
      async (request, reply) => {
        const { sku, imageId } = request.params;
        await requireImage(sku, imageId);
        return submitProcess(request, reply, { sku, imageId, create: false });
      },
    );

    app.post(
      '/api/pms/products/:sku/images/:imageId/rollback',
      {
        config: { scope: 'pms' },
        schema: {
          tags,
          summary: 'Make an earlier version current again (job image.rollback)',
          params: imageParams,
          body: z.object({ version: z.number().int().min(1) }).meta({ example: { version: 1 } }),
          response: { 202: jobHandleSchema, 200: imageSchema },
        },
      },
      (request, reply) =>
        submitJob(deps, request, reply, imageJobs.rollback, {
          ...request.params,
          version: request.body.version,
        }),
    );

    app.delete(
      '/api/pms/products/:sku/images/:imageId',
      {
        config: { scope: 'pms' },
        schema: {
          tags,
          summary:
            'Delete an image and its stored files (job image.delete); a published product keeps its main image',
          params: imageParams,
          response: {
            202: jobHandleSchema,
            200: deletedImageSchema,
          },
        },
      },
      (request, reply) => submitJob(deps, request, reply, imageJobs.delete, request.params),
    );

    app.get(
      '/api/pms/products/:sku/images',
      {
        config: { scope: 'pms' },
        schema: {
          tags,
          summary: 'The product’s images (current versions) in position order, with URLs and placeholders',
          params: skuParams,
          response: { 200: z.object({ items: z.array(imageSchema) }) },
        },
      },
      async (request) => {
        await requireProduct(request.params.sku);
        return { items: await listImages(deps.db, request.params.sku, urls) };
      },
    );

    app.get(
      '/api/pms/products/:sku/images/:imageId',
      {
        config: { scope: 'pms' },
        schema: {
          tags,
          summary: 'One image with its current version',
          params: imageParams,
          response: { 200: imageSchema },
        },
      },
      async (request) => {
        const image = await getImage(deps.db, request.params.sku, request.params.imageId, urls);
        if (!image) {
          throw imageNotFound(request.params.sku, request.params.imageId);
        }
        return image;
      },
    );

    app.get(
      '/api/pms/products/:sku/images/:imageId/versions',
      {
        config: { scope: 'pms' },
        schema: {
          tags,
          summary: 'Every version of an image, newest first (`current` marks the one in use)',
          params: imageParams,
          response: { 200: z.object({ items: z.array(imageVersionSchema) }) },
        },
      },
      async (request) => {
        const versions = await listImageVersions(deps.db, request.params.sku, request.params.imageId, urls);
        if (!versions) {
          throw imageNotFound(request.params.sku, request.params.imageId);
        }
        return { items: versions };
      },
    );
  });
}

const imageNotFound = (sku: string, imageId: string) =>
  new HttpProblem(404, 'not_found', `Image ${imageId} of product ${sku} does not exist`);
