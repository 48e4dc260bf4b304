import { iso31661 } from 'iso-3166';
import { z } from 'zod';
import { codeSchema } from './fields.js';
import { quantitySchema } from './inventory.js';
import { currencySchema, skuSchema } from './products.js';
import { ttlSecondsSchema } from './reservations.js';

/** ISO 3166-1 alpha-2, assigned codes only (the `iso-3166` package tracks the standard). */
const countries = new Set(iso31661.map((c) => c.alpha2));

export const orderNumberSchema = codeSchema(
  'orderNumber',
  '1-64 characters of letters, digits, dot, underscore or hyphen',
);

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
/** The lines of an order request: 1 to 500, every sku at most once. */
export const linesOf = <T extends z.ZodType<{ sku: string }>>(line: T) =>
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

export const quantityLineSchema = z.object({ sku: skuSchema, quantity: quantitySchema });

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
/** A new order as its job (and the inbound `order.created` job) carries it: holdSeconds filled in at intake. */
export const createOrderPayload = z.object({ ...orderFields, holdSeconds: ttlSecondsSchema });
export type CreateOrderInput = z.output<typeof createOrderPayload>;

export const orderRefPayload = z.object({ orderNumber: orderNumberSchema });
