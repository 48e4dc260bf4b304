import { z } from 'zod';
import { alertSchema } from './alerts.js';
import { eventUrlSchema, type UrlPath, urlPathsOf } from './event-urls.js';
import { deletedImageSchema, imageSchema, imageVersionSchema } from './images.js';
import { levelSchema, movementSchema } from './inventory.js';
import { locationSchema } from './locations.js';
import { productSchema } from './products.js';
import { reservationSchema } from './reservations.js';
import { webhookEndpointSchema } from './webhooks.js';

/**
 * Every event type the platform writes, declared once: its name, what it means, and the schema of
 * its `data`. Code can only append a type named here (`NewEvent['type']` is this union); the types
 * database triggers write (`stock.moved`) are here too. Feeds, streams and webhook endpoints check
 * their type filters against this list.
 */

interface EventTypeDefinition<Name extends string = string, Data extends z.ZodType = z.ZodType> {
  readonly name: Name;
  readonly description: string;
  readonly data: Data;
  /** Written by a database trigger rather than by `appendEvent`. */
  readonly writtenBy?: 'trigger';
}

const defineEventType = <const Name extends string, Data extends z.ZodType>(
  definition: EventTypeDefinition<Name, Data>,
) => definition;

// Each schema lists every field its writers put in `data` (the catalogue test fails on a field
// written but not declared). Consumers must still ignore fields they do not know: an event may
// gain fields in a later release; it never loses or retypes one. The published JSON Schemas
// (GET /api/pms/events/types) therefore allow additional properties.
// Every URL field is an `eventUrlSchema`: the outbox redacts it (no credentials, query or
// fragment), whatever the writer put there (tests/unit/event-urls.test.ts walks this list).
const product = z.object({ product: productSchema });
const location = z.object({ location: locationSchema });
const reservation = z.object({ reservation: reservationSchema });
const endpoint = z.object({ endpoint: webhookEndpointSchema.extend({ url: eventUrlSchema }) });
const variants = imageVersionSchema.shape.variants;
/** An image as events carry it: its source URL and rendition URLs redacted. */
const eventImage = imageSchema.extend({
  current: imageVersionSchema.extend({
    /** The source URL (redacted), or `upload`. */
    source: eventUrlSchema,
    variants: z.record(
      variants.keyType,
      variants.valueType.extend({ urls: z.record(z.string(), eventUrlSchema) }),
    ),
  }),
});
const quantityLine = z.looseObject({ sku: z.string(), quantity: z.number().int() });
const order = z.looseObject({
  order: z.looseObject({
    orderNumber: z.string(),
    status: z.enum(['reserved', 'confirmed', 'partially_fulfilled', 'fulfilled', 'cancelled', 'expired']),
    /** Rises with every change of the order: consumers order its events by it. */
    version: z.number().int(),
    reservationId: z.string(),
    lines: z.array(
      z.looseObject({
        sku: z.string(),
        ordered: z.number().int(),
        openReserved: z.number().int(),
        fulfilled: z.number().int(),
        cancelled: z.number().int(),
        returned: z.number().int(),
      }),
    ),
  }),
});
const fulfilment = order.extend({
  fulfilment: z.looseObject({
    lines: z.array(quantityLine),
    movements: z.array(
      z.looseObject({
        id: z.number().int(),
        sku: z.string(),
        location: z.string(),
        quantity: z.number().int(),
      }),
    ),
  }),
});
const supplier = z.looseObject({
  supplier: z.looseObject({
    code: z.string(),
    apiUrl: eventUrlSchema,
    active: z.boolean(),
    version: z.number().int(),
  }),
});
const purchaseOrderLine = z.looseObject({
  sku: z.string(),
  quantity: z.number().int(),
  acceptedQuantity: z.number().int().nullable(),
  receivedQuantity: z.number().int(),
  outstanding: z.number().int(),
  ruleId: z.number().int(),
});
const purchaseOrder = z.looseObject({
  purchaseOrder: z.looseObject({
    id: z.string(),
    number: z.string(),
    supplier: z.string(),
    location: z.string(),
    status: z.string(),
    version: z.number().int(),
    lines: z.array(purchaseOrderLine),
  }),
});
/** A purchase order whose send ended without an acknowledgement, and why. */
const purchaseOrderFailed = purchaseOrder.extend({
  failure: z.looseObject({
    reason: z.string(),
    statusCode: z.number().int().nullable(),
    error: z.string(),
  }),
});

const stockStates = z.enum(['in_stock', 'low', 'out']);
/** Written by the ledger's apply trigger (db/migrations/20261202060000_stock_notifications.ts). */
const stockState = z.looseObject({
  sku: z.string(),
  location: z.string(),
  state: stockStates,
  previousState: stockStates,
  /** on_hand − reserved − safety stock, at least 0: as the inventory API shows it. */
  available: z.number().int().min(0),
  previousAvailable: z.number().int().min(0),
  /** The low-stock threshold in force: the reorder point of the level's reorder rule, else its safety stock. */
  threshold: z.number().int().min(0),
  onHand: z.number().int(),
  reserved: z.number().int(),
  safetyStock: z.number().int(),
  /** What crossed: a ledger movement, or a new safety stock. */
  cause: z.enum(['movement', 'safety_stock']),
  movementId: z.number().int().nullable(),
});
/** What the rules put in an alert's `details` (src/ops/alerts.ts); the endpoint's URL redacted. */
const alertDetails = z
  .object({
    url: eventUrlSchema,
    reason: z.string().nullable(),
    disabledAt: z.string().nullable(),
    requests: z.number(),
    slowerThanThreshold: z.number(),
    windowSeconds: z.number(),
    pendingSince: z.string(),
  })
  .partial();
const alert = z.looseObject({ alert: alertSchema.extend({ details: alertDetails }) });

export const eventTypes = [
  defineEventType({ name: 'product.created', description: 'A product was created', data: product }),
  defineEventType({ name: 'product.updated', description: 'A product was replaced', data: product }),
  defineEventType({ name: 'product.archived', description: 'A product was archived', data: product }),
  defineEventType({ name: 'product.published', description: 'A product was published', data: product }),
  defineEventType({ name: 'location.created', description: 'A stock location was created', data: location }),
  defineEventType({ name: 'location.updated', description: 'A stock location was changed', data: location }),
  defineEventType({
    name: 'stock.moved',
    description:
      'One ledger movement was applied to a level (receipt, adjustment, sale, count, transfer, reservation, …)',
    writtenBy: 'trigger',
    // Written by the trigger stockflow_apply_movement (db/migrations/20261126000200_inventory.ts).
    data: movementSchema
      .pick({
        kind: true,
        sku: true,
        location: true,
        delta: true,
        onHandAfter: true,
        reservedAfter: true,
        reason: true,
        reference: true,
        reservationId: true,
      })
      .extend({ movementId: z.number().int() }),
  }),
  defineEventType({
    name: 'inventory.low_stock',
    description:
      "A level's available stock fell to or below its threshold (its reorder rule's point, else its safety stock), or rose from zero to it",
    writtenBy: 'trigger',
    data: stockState,
  }),
  defineEventType({
    name: 'inventory.out_of_stock',
    description: "A level's available stock reached zero",
    writtenBy: 'trigger',
    data: stockState,
  }),
  defineEventType({
    name: 'inventory.back_in_stock',
    description: "A level's available stock rose above its threshold again",
    writtenBy: 'trigger',
    data: stockState,
  }),
  defineEventType({
    name: 'stock.safety_stock_set',
    description: "A level's safety stock was set",
    data: z.object({ level: levelSchema }),
  }),
  defineEventType({ name: 'reservation.created', description: 'Stock was reserved', data: reservation }),
  defineEventType({
    name: 'reservation.committed',
    description: 'A reservation became a sale',
    data: reservation,
  }),
  defineEventType({
    name: 'reservation.released',
    description: 'A reservation was given back',
    data: reservation,
  }),
  defineEventType({
    name: 'reservation.extended',
    description: 'A reservation got a later expiry',
    data: reservation,
  }),
  defineEventType({
    name: 'reservation.expired',
    description: 'A reservation expired and its stock was freed',
    data: reservation,
  }),
  defineEventType({
    name: 'product.sync_conflict',
    description:
      'A PMS product webhook carried a version not newer than the last one applied, so it was not applied',
    data: z.looseObject({
      sku: z.string(),
      webhookId: z.string(),
      webhookType: z.string(),
      incomingVersion: z.number().int(),
      appliedVersion: z.number().int(),
    }),
  }),
  defineEventType({
    name: 'order.created',
    description: 'An order was placed and its lines reserved',
    data: order,
  }),
  defineEventType({
    name: 'order.confirmed',
    description: 'An order was confirmed (paid): its reservation no longer expires',
    data: order,
  }),
  defineEventType({
    name: 'order.partially_fulfilled',
    description: 'Part of an order was fulfilled (committed out of its reservation); some is still reserved',
    data: fulfilment,
  }),
  defineEventType({
    name: 'order.fulfilled',
    description: 'The last reserved units of an order were fulfilled',
    data: fulfilment,
  }),
  defineEventType({
    name: 'order.cancelled',
    description: 'An order was cancelled: what was still reserved was released',
    data: order,
  }),
  defineEventType({
    name: 'order.expired',
    description: "An unconfirmed order's reservation expired: its stock was released",
    data: order,
  }),
  defineEventType({
    name: 'order.returned',
    description:
      'Fulfilled units of an order came back (restocked through return movements, or only recorded)',
    data: order.extend({
      return: z.looseObject({
        restock: z.boolean(),
        lines: z.array(quantityLine.extend({ location: z.string().nullable() })),
        note: z.string().nullable(),
      }),
    }),
  }),
  defineEventType({
    name: 'image.processed',
    description: 'An image version was processed and stored',
    data: z.object({ sku: z.string(), image: eventImage }),
  }),
  defineEventType({
    name: 'image.rolled_back',
    description: 'An image was pointed back at an earlier version',
    data: z.object({
      sku: z.string(),
      fromVersion: z.number().int(),
      toVersion: z.number().int(),
      image: eventImage,
    }),
  }),
  defineEventType({ name: 'image.deleted', description: 'An image was deleted', data: deletedImageSchema }),
  defineEventType({
    name: 'image.failed',
    description: 'Processing an image failed for good; nothing of it was kept',
    data: z.object({
      sku: z.string(),
      imageId: z.string(),
      /** true: the failed job was creating the image; false: adding a version to it. */
      create: z.boolean(),
      /** The source URL (redacted), or `upload` for uploaded bytes. */
      source: eventUrlSchema,
      attempts: z.number().int(),
      error: z.object({
        code: z.string(),
        message: z.string(),
        /** The download's `url` among them is redacted too. */
        details: z.looseObject({ url: eventUrlSchema.optional() }),
      }),
    }),
  }),
  defineEventType({
    name: 'webhook.endpoint_created',
    description: 'A webhook endpoint was registered',
    data: endpoint,
  }),
  defineEventType({
    name: 'webhook.endpoint_updated',
    description: 'A webhook endpoint was changed',
    data: endpoint,
  }),
  defineEventType({
    name: 'webhook.endpoint_deleted',
    description: 'A webhook endpoint was deleted',
    data: endpoint,
  }),
  defineEventType({
    name: 'webhook.endpoint_secret_rotated',
    description: "A webhook endpoint's signing secret was rotated",
    data: endpoint,
  }),
  defineEventType({
    name: 'webhook.endpoint_enabled',
    description: 'A webhook endpoint was enabled again; its held deliveries are sent',
    data: endpoint.extend({ heldDeliveries: z.number().int() }),
  }),
  defineEventType({
    name: 'webhook.endpoint_disabled',
    description: 'A webhook endpoint was disabled by its circuit breaker or a 410 Gone answer',
    data: endpoint.extend({
      reason: z.enum(['gone', 'consecutive_failures', 'failing_span']),
      /** gone: the answer and the delivery that got it. */
      statusCode: z.number().int().optional(),
      deliveryId: z.string().optional(),
      eventId: z.string().optional(),
      /** The breaker: failures counted, and the last attempt's error. */
      consecutiveFailures: z.number().int().optional(),
      lastError: z.string().nullable().optional(),
    }),
  }),
  defineEventType({
    name: 'webhook.delivery_exhausted',
    description: 'A webhook delivery failed its last attempt',
    data: z.object({
      deliveryId: z.string(),
      endpointId: z.string(),
      eventId: z.string(),
      eventSeq: z.number().int(),
      eventType: z.string(),
      attempts: z.number().int(),
      lastStatusCode: z.number().int().nullable(),
      lastError: z.string().nullable(),
    }),
  }),
  defineEventType({ name: 'supplier.created', description: 'A supplier was registered', data: supplier }),
  defineEventType({
    name: 'supplier.updated',
    description: "A supplier's settings were replaced",
    data: supplier,
  }),
  defineEventType({
    name: 'reorder_rule.set',
    description: 'A reorder rule was created or replaced',
    data: z.looseObject({
      rule: z.looseObject({
        id: z.number().int(),
        sku: z.string(),
        location: z.string(),
        supplier: z.string(),
        reorderPoint: z.union([z.number().int(), z.literal('auto')]),
      }),
    }),
  }),
  defineEventType({
    name: 'reorder.skipped',
    description:
      'A rule at or below its reorder point could not order (reason: purchase_order_unresolved, supplier_inactive, product_archived, nothing_to_order)',
    data: z.looseObject({
      ruleId: z.number().int(),
      sku: z.string(),
      location: z.string(),
      supplier: z.string(),
      reason: z.enum([
        'purchase_order_unresolved',
        'supplier_inactive',
        'product_archived',
        'nothing_to_order',
      ]),
      reorderPoint: z.number().int(),
      position: z.number().int(),
    }),
  }),
  defineEventType({
    name: 'purchase_order.created',
    description: 'The planner opened a draft purchase order with its first line',
    data: purchaseOrder,
  }),
  defineEventType({
    name: 'purchase_order.updated',
    description: "The planner changed a draft purchase order's lines (data.change says how)",
    data: purchaseOrder.extend({ change: z.looseObject({}) }),
  }),
  defineEventType({
    name: 'purchase_order.sent',
    description:
      "A purchase order is being sent to its supplier's API (resend: true when an operator sent an unresolved order again)",
    data: purchaseOrder,
  }),
  defineEventType({
    name: 'purchase_order.acknowledged',
    description:
      'The supplier accepted the order (its reference, expected date and accepted quantities; resolvedBy: "operator" when an operator acknowledged an unresolved order)',
    data: purchaseOrder.extend({ reference: z.string().nullable(), expectedDate: z.string().nullable() }),
  }),
  defineEventType({
    name: 'purchase_order.rejected',
    description: 'The supplier rejected the order; its rule may order again',
    data: purchaseOrder.extend({ reason: z.string().nullable() }),
  }),
  defineEventType({
    name: 'purchase_order.send_failed',
    description:
      'Sending failed for good: the order did not reach the supplier or it refused it (a 4xx other than 408/429, a refused address); its rules may order again',
    data: purchaseOrderFailed,
  }),
  defineEventType({
    name: 'purchase_order.unresolved',
    description:
      'The supplier may have the order but no answer could be taken (a 2xx outside the protocol, or every attempt without a definite answer); its rules wait for an operator to resolve or cancel it',
    data: purchaseOrderFailed,
  }),
  defineEventType({
    name: 'purchase_order.partially_received',
    description: 'Part of a purchase order was received (receipt movements written)',
    data: purchaseOrder.extend({
      received: z.array(z.looseObject({ sku: z.string(), quantity: z.number().int() })),
    }),
  }),
  defineEventType({
    name: 'purchase_order.received',
    description: 'A purchase order was received in full',
    data: purchaseOrder.extend({
      received: z.array(z.looseObject({ sku: z.string(), quantity: z.number().int() })),
    }),
  }),
  defineEventType({
    name: 'purchase_order.cancelled',
    description: 'A purchase order was cancelled; its lines no longer count as incoming',
    data: purchaseOrder.extend({ reason: z.string().nullable() }),
  }),
  defineEventType({
    name: 'alert.opened',
    description:
      'The platform opened an alert about itself (queue backlog, failures, latency, endpoint, stock)',
    data: alert,
  }),
  defineEventType({
    name: 'alert.resolved',
    description: "An open alert's condition has been quiet for the hold-down period",
    data: alert,
  }),
] as const;

export type EventType = (typeof eventTypes)[number]['name'];
export type EventDataOf<T extends EventType> = z.output<
  Extract<(typeof eventTypes)[number], { name: T }>['data']
>;

const byName = new Map<string, (typeof eventTypes)[number]>(eventTypes.map((t) => [t.name, t]));

export function findEventType(name: string): (typeof eventTypes)[number] | undefined {
  return byName.get(name);
}

export const eventTypeNames: readonly string[] = eventTypes.map((t) => t.name);

/** The URL fields of each type that has any: what the outbox redacts. */
const urlPaths = new Map<string, UrlPath[]>(
  eventTypes.flatMap((t) => {
    const paths = urlPathsOf(t.data);
    return paths.length > 0 ? [[t.name, paths] as const] : [];
  }),
);

/** Where the URLs of an event type's data are (none for most types). */
export function urlPathsOfType(type: string): readonly UrlPath[] {
  return urlPaths.get(type) ?? [];
}

/** The catalogue as clients read it: names, descriptions and each `data` as a JSON Schema. */
export function describeEventTypes() {
  return eventTypes.map((t) => ({
    name: t.name,
    description: t.description,
    writtenBy: t.writtenBy ?? ('application' as const),
    // `input`: no `additionalProperties: false`, since an event may gain fields (see above).
    dataSchema: z.toJSONSchema(t.data, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>,
  }));
}

/**
 * Why this event's data does not match its declared schema (undefined when it does): an unknown
 * type, an invalid field, or a field written that the schema does not declare (zod strips unknown
 * keys, so parsing and comparing finds them).
 */
export function checkEventData(type: string, data: unknown): string | undefined {
  const definition = byName.get(type);
  if (!definition) return `${type} is not in the catalogue`;
  const parsed = definition.data.safeParse(data);
  if (!parsed.success) return `${type}: ${z.prettifyError(parsed.error)}`;
  const undeclared = strippedPaths(data, parsed.data, '');
  if (undeclared.length > 0) return `${type}: data has undeclared field(s) ${undeclared.join(', ')}`;
  return undefined;
}

/** The paths present in `written` but missing from `parsed` (what zod stripped). */
function strippedPaths(written: unknown, parsed: unknown, at: string): string[] {
  if (typeof written !== 'object' || written === null || typeof parsed !== 'object' || parsed === null)
    return [];
  return Object.entries(written).flatMap(([key, value]) => {
    const path = at ? `${at}.${key}` : key;
    return key in parsed ? strippedPaths(value, (parsed as Record<string, unknown>)[key], path) : [path];
  });
}
