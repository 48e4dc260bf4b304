import { z } from 'zod';
import { instantSchema } from './fields.js';
import { adjustPayload, setPayload } from './inventory.js';
import { createOrderBody, createOrderPayload, orderRefPayload } from './orders.js';
import { createProductPayload, skuSchema } from './products.js';

/**
 * The events the PMS sends to its signed inbound webhooks: each type's `data` is the shape the
 * REST route that does the same thing takes, so both intakes refuse the same input.
 */

/** The PMS's own version of a product: only a newer one than the last applied is applied. */
const pmsVersionSchema = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

export const inboundEndpoints = ['product', 'inventory', 'order'] as const;
export type InboundEndpoint = (typeof inboundEndpoints)[number];

const productUpserted = createProductPayload.extend({ version: pmsVersionSchema });
const productArchived = z.object({ sku: skuSchema, version: pmsVersionSchema.optional() });

/**
 * Every type the PMS may send, the endpoint that takes it and the schema its `data` must match:
 * the same schemas as the REST routes that do the same thing. The job's payload (below) carries
 * the data with defaults filled in at intake (an order's holdSeconds).
 */
export const inboundTypes = {
  'product.upserted': { endpoint: 'product', data: productUpserted },
  'product.archived': { endpoint: 'product', data: productArchived },
  'inventory.adjusted': { endpoint: 'inventory', data: adjustPayload },
  'inventory.counted': { endpoint: 'inventory', data: setPayload },
  'order.created': { endpoint: 'order', data: createOrderBody },
  'order.cancelled': { endpoint: 'order', data: orderRefPayload },
} as const satisfies Record<string, { endpoint: InboundEndpoint; data: z.ZodType }>;
export type InboundType = keyof typeof inboundTypes;

export const typesOf = (endpoint: InboundEndpoint) =>
  (Object.keys(inboundTypes) as InboundType[]).filter((t) => inboundTypes[t].endpoint === endpoint);

const envelope = {
  /** The Standard Webhooks `webhook-id`: the delivery's identity, deduplicated. */
  webhookId: z.string().min(1).max(255),
  /** The event's own `timestamp` from the body. */
  timestamp: instantSchema,
};

// Compatibility: a new type is a new variant; a variant's data only gains optional fields.
export const inboundPayload = z.discriminatedUnion('type', [
  z.object({ ...envelope, type: z.literal('product.upserted'), data: productUpserted }),
  z.object({ ...envelope, type: z.literal('product.archived'), data: productArchived }),
  z.object({ ...envelope, type: z.literal('inventory.adjusted'), data: adjustPayload }),
  z.object({ ...envelope, type: z.literal('inventory.counted'), data: setPayload }),
  z.object({ ...envelope, type: z.literal('order.created'), data: createOrderPayload }),
  z.object({ ...envelope, type: z.literal('order.cancelled'), data: orderRefPayload }),
]);
export type InboundEvent = z.output<typeof inboundPayload>;
