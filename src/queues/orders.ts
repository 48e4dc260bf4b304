import { iso31661 } from 'iso-3166';
import { z } from 'zod';
import type { OrderChange } from '../domain/orders-changes.js';
import { locationCodeSchema, quantitySchema, ttlSecondsSchema } from './inventory.js';
import { defineJob } from './job.js';
import { currencySchema, skuSchema } from './products.js';

/** ISO 3166-1 alpha-2, assigned codes only (the `iso-3166` package tracks the standard). */
const countries = new Set(iso31661.map((c) => c.alpha2));

export const orderNumberSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9._-]{1,64}$/,
    'orderNumber must be 1-64 characters of letters, digits, dot, underscore or hyphen',
  )
  // They would name the current or parent directory in every URL that carries the number.
  .refine((n) => n !== '.' && n !== '..', 'orderNumber must not be . or ..');

/**
 * Every sku at most once: the issue on a repeated line names the line it repeats. It runs even
 * when other lines are invalid (`when`), so a request learns every bad field at once.
 */
function skusOnce(lines: unknown[], ctx: z.RefinementCtx): void {
  const first = new Map<string, number>();
  lines.forEach((line, index) => {
    const sku = (line as { sku?: unknown } | null)?.sku;
    if (typeof sku !== 'string') return;
    const seen = first.get(sku);
    if (seen === undefined) first.set(sku, index);
    else ctx.addIssue({ code: 'custom', path: [index, 'sku'], message: `repeats the sku of line ${seen}` });
  });
}

const maxLines = 500;
const linesOf = <T extends z.ZodType<{ sku: string }>>(line: T) =>
  z
    .array(line)
    .min(1, 'needs at least 1 line')
    .max(maxLines, `at most ${maxLines} lines`)
    .superRefine(skusOnce, { when: (payload) => Array.isArray(payload.value) });

const orderLineSchema = z.object({
  sku: skuSchema,
  quantity: quantitySchema,
  /** Minor unit of the order's currency: 1999 is 19.99 EUR. */
  unitPrice: z.number().int('unitPrice must be an integer in minor units').min(0).max(1_000_000_000_000),
});

const quantityLineSchema = z.object({ sku: skuSchema, quantity: quantitySchema });

const orderFields = {
  orderNumber: orderNumberSchema,
  currency: currencySchema,
  lines: linesOf(orderLineSchema),
  shipTo: z
    .object({
      country: z
        .string()
        .refine((c) => countries.has(c), 'country must be an ISO 3166-1 alpha-2 code such as DE'),
      postalCode: z.string().trim().min(1).max(32).optional(),
    })
    .optional(),
};

/** What `POST /api/pms/orders` (and the inbound `order.created`) accepts; holdSeconds defaults to ORDER_HOLD_SECONDS. */
export const createOrderBody = z
  .object({
    ...orderFields,
    /** How long the reservation holds before the order expires, unless it is confirmed first. */
    holdSeconds: ttlSecondsSchema.optional(),
  })
  .meta({
    example: {
      orderNumber: 'SO-1001',
      currency: 'EUR',
      lines: [
        { sku: 'TSHIRT-RED-M', quantity: 2, unitPrice: 1999 },
        { sku: 'MUG', quantity: 1, unitPrice: 899 },
      ],
      shipTo: { country: 'DE', postalCode: '10115' },
      holdSeconds: 900,
    },
  });

// Compatibility: payloads only gain optional fields; a worker must accept jobs queued by the
// previous release, so never make a field required or narrow a type without a migration note.
export const createOrderPayload = z.object({ ...orderFields, holdSeconds: ttlSecondsSchema });

export const orderRefPayload = z.object({ orderNumber: orderNumberSchema });

export const fulfillBody = z
  .object({
    /** Left out: everything still reserved. */
    lines: linesOf(quantityLineSchema).optional(),
  })
  .meta({ example: { lines: [{ sku: 'TSHIRT-RED-M', quantity: 1 }] } });
export const fulfillPayload = fulfillBody.extend({ orderNumber: orderNumberSchema });

const returnFields = {
  lines: linesOf(quantityLineSchema),
  /** true: the units go back on hand (return movements); false: the return is only recorded. */
  restock: z.boolean(),
  /** Where restocked units go; left out: back where they were committed from. */
  location: locationCodeSchema.optional(),
  note: z.string().max(2000).optional(),
};
const locationOnlyWithRestock = {
  check: (r: { restock: boolean; location?: string }) => r.restock || r.location === undefined,
  issue: {
    path: ['location'],
    message: 'only with restock: true',
    when: (payload: z.core.ParsePayload) => typeof payload.value === 'object' && payload.value !== null,
  },
};
export const returnBody = z
  .object(returnFields)
  .refine(locationOnlyWithRestock.check, locationOnlyWithRestock.issue)
  .meta({ example: { lines: [{ sku: 'TSHIRT-RED-M', quantity: 1 }], restock: true } });
export const returnPayload = z
  .object({ orderNumber: orderNumberSchema, ...returnFields })
  .refine(locationOnlyWithRestock.check, locationOnlyWithRestock.issue);

export const orderJobs = {
  create: defineJob<OrderChange>()({ name: 'order.create', queue: 'orders', payload: createOrderPayload }),
  confirm: defineJob<OrderChange>()({ name: 'order.confirm', queue: 'orders', payload: orderRefPayload }),
  cancel: defineJob<OrderChange>()({ name: 'order.cancel', queue: 'orders', payload: orderRefPayload }),
  fulfill: defineJob<OrderChange>()({ name: 'order.fulfill', queue: 'orders', payload: fulfillPayload }),
  return: defineJob<OrderChange>()({ name: 'order.return', queue: 'orders', payload: returnPayload }),
};
