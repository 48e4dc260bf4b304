import { z } from 'zod';
import { movementKinds } from './domain/ledger.js';
import { moneySchema } from './queues/products.js';

/**
 * The resources as the API answers them and as events carry them in `data`: one zod schema each,
 * so a route's response and the event catalogue cannot describe the same product differently.
 */

export const productSchema = z
  .object({
    sku: z.string(),
    name: z.string(),
    description: z.string().nullable(),
    price: moneySchema,
    status: z.enum(['draft', 'published', 'archived']),
    attributes: z.record(z.string(), z.unknown()),
    version: z.number().int(),
    createdAt: z.string(),
    updatedAt: z.string(),
    publishedAt: z.string().nullable(),
  })
  .meta({ id: 'Product' });

export const locationSchema = z
  .object({
    code: z.string(),
    name: z.string(),
    priority: z.number().int(),
    active: z.boolean(),
    version: z.number().int(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: 'Location' });

export const movementKindSchema = z.enum(movementKinds);

export const movementSchema = z
  .object({
    id: z.number().int(),
    kind: movementKindSchema,
    sku: z.string(),
    location: z.string(),
    delta: z.number().int(),
    onHandAfter: z.number().int(),
    reservedAfter: z.number().int(),
    reason: z.string().nullable(),
    reference: z.string().nullable(),
    note: z.string().nullable(),
    reservationId: z.string().nullable(),
    actor: z.string().nullable(),
    jobId: z.string().nullable(),
    createdAt: z.string(),
  })
  .meta({ id: 'Movement' });

export const levelFigures = {
  onHand: z.number().int(),
  reserved: z.number().int(),
  available: z.number().int(),
  safetyStock: z.number().int(),
  incoming: z.number().int(),
};

export const levelSchema = z
  .object({
    sku: z.string(),
    location: z.string(),
    ...levelFigures,
    version: z.number().int(),
    updatedAt: z.string(),
  })
  .meta({ id: 'Level' });

export const reservationSchema = z
  .object({
    id: z.string(),
    reference: z.string(),
    status: z.enum(['active', 'committed', 'released', 'expired']),
    expiresAt: z.string().nullable().describe('null: held until committed or released (a confirmed order)'),
    owner: z.enum(['order']).nullable().describe('set: the reservation changes only through its owner'),
    createdAt: z.string(),
    updatedAt: z.string(),
    closedAt: z.string().nullable(),
    version: z.number().int(),
    lines: z.array(
      z.object({
        line: z.number().int(),
        sku: z.string(),
        location: z.string(),
        quantity: z.number().int(),
        committed: z.number().int(),
        released: z.number().int(),
        rule: z.enum(['explicit', 'single_location', 'fewest_locations', 'split']),
      }),
    ),
  })
  .meta({ id: 'Reservation' });

const variantSchema = z.object({
  width: z.number().int(),
  height: z.number().int(),
  urls: z.record(z.string(), z.string()),
  bytes: z.record(z.string(), z.number().int()),
});

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

export const imageSchema = z
  .object({
    id: z.string(),
    sku: z.string(),
    role: z.enum(['main', 'gallery']),
    position: z.number().int(),
    alt: z.string().nullable(),
    currentVersion: z.number().int(),
    createdAt: z.string(),
    updatedAt: z.string(),
    current: imageVersionSchema,
  })
  .meta({ id: 'Image' });

export const deletedImageSchema = z
  .object({ id: z.string(), sku: z.string(), deletedAt: z.string() })
  .meta({ id: 'DeletedImage' });

export const webhookEndpointSchema = z
  .object({
    id: z.string(),
    url: z.string(),
    description: z.string().nullable(),
    eventTypes: z.array(z.string()),
    rateLimitPerSecond: z.number().int().nullable(),
    status: z.enum(['enabled', 'disabled']),
    disabledReason: z.string().nullable(),
    disabledAt: z.string().nullable(),
    consecutiveFailures: z.number().int(),
    failingSince: z.string().nullable(),
    lastSuccessAt: z.string().nullable(),
    previousSecretExpiresAt: z.string().nullable(),
    version: z.number().int(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: 'WebhookEndpoint' });
