import { z } from 'zod';

export const imageRoleSchema = z.enum(['main', 'gallery']);
export type ImageRole = z.output<typeof imageRoleSchema>;

/** What the PMS may set on an image alongside its bytes. */
export const imageFieldsSchema = z.object({
  alt: z.string().max(500).optional(),
  position: z.coerce.number().int().min(0).max(10_000).optional(),
  role: imageRoleSchema.optional(),
});

export const sha256Schema = z.string().regex(/^[0-9a-f]{64}$/, 'sha-256 in lowercase hex');

const variantSchema = z.object({
  width: z.number().int(),
  height: z.number().int(),
  /** Per format (webp, jpeg, avif when enabled): its URL. */
  urls: z.record(z.string(), z.string()),
  bytes: z.record(z.string(), z.number().int()),
});
export type ImageVariant = z.output<typeof variantSchema>;

export const imageVersionSchema = z
  .object({
    version: z.number().int(),
    current: z.boolean(),
    sha256: z.string(),
    source: z.string(),
    format: z.string(),
    width: z.number().int(),
    height: z.number().int(),
    bytes: z.number().int(),
    hasAlpha: z.boolean(),
    orientation: z.number().int().nullable(),
    dominantColor: z.string(),
    placeholder: z.object({ thumbhash: z.string(), preview: z.string() }),
    storage: z.enum(['local', 'cloudinary']),
    variants: z.record(z.string(), variantSchema),
    createdAt: z.string(),
  })
  .meta({ id: 'ImageVersion' });
export type ImageVersion = z.output<typeof imageVersionSchema>;

export const imageSchema = z
  .object({
    id: z.string(),
    sku: z.string(),
    role: imageRoleSchema,
    position: z.number().int(),
    alt: z.string().nullable(),
    currentVersion: z.number().int(),
    createdAt: z.string(),
    updatedAt: z.string(),
    current: imageVersionSchema,
  })
  .meta({ id: 'Image' });
export type Image = z.output<typeof imageSchema>;

export const deletedImageSchema = z
  .object({ id: z.string(), sku: z.string(), deletedAt: z.string() })
  .meta({ id: 'DeletedImage' });
export type DeletedImage = z.output<typeof deletedImageSchema>;
