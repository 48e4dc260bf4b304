import { z } from 'zod';
import { httpUrlSchema } from '../schemas/fields.js';
import { type DeletedImage, type Image, imageFieldsSchema, sha256Schema } from '../schemas/images.js';
import { skuSchema } from '../schemas/products.js';
import { defineJob } from './job.js';

// Compatibility: payloads only gain optional fields; a worker must accept jobs queued by the
// previous release, so never make a field required or narrow a type without a migration note.
export const processImagePayload = z.object({
  sku: skuSchema,
  imageId: z.uuid(),
  /** true: the job creates the image (version 1); false: it adds a version to an existing image. */
  create: z.boolean(),
  source: z.discriminatedUnion('kind', [
    /** Bytes staged in `image_uploads` under (imageId, sha256) by the web process. */
    z.object({
      kind: z.literal('upload'),
      sha256: sha256Schema,
      declaredType: z.string().max(200).optional(),
    }),
    /** Downloaded by the worker through the SSRF guard. */
    // Compatibility: the URL schema (src/schemas/fields.ts) now refuses surrounding spaces that the previous
    // release accepted; a job queued with one fails invalid_payload instead of downloading.
    z.object({ kind: z.literal('url'), url: httpUrlSchema }),
  ]),
  ...imageFieldsSchema.shape,
});

export const imageRefPayload = z.object({ sku: skuSchema, imageId: z.uuid() });

export const rollbackImagePayload = imageRefPayload.extend({ version: z.number().int().min(1) });

export interface ProcessedImage {
  image: Image;
  /** True when these bytes were already a version of this image: nothing new was stored. */
  deduplicated: boolean;
}

export const imageJobs = {
  process: defineJob<ProcessedImage>()({
    name: 'image.process',
    queue: 'images',
    payload: processImagePayload,
  }),
  rollback: defineJob<Image>()({ name: 'image.rollback', queue: 'images', payload: rollbackImagePayload }),
  delete: defineJob<DeletedImage>()({ name: 'image.delete', queue: 'images', payload: imageRefPayload }),
};
