import { iso31661 } from 'iso-3166';
import { z } from 'zod';
import { codeSchema } from './fields.js';
import { movementSchema, noteSchema, quantitySchema } from './inventory.js';
import { locationCodeSchema } from './locations.js';
import { currencySchema, skuSchema } from './products.js';
import { reservationSchema, ttlSecondsSchema } from './reservations.js';

export const orderStatuses = [
  'reserved',
  'confirmed',
  'partially_fulfilled',
  'fulfilled',
  'cancelled',
  'expired',
] as const;
export type OrderStatus = (typeof orderStatuses)[number];

export const orderActions = ['confirm', 'fulfill', 'cancel', 'return', 'expire'] as const;
export type OrderAction = (typeof orderActions)[number];

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

const returnFields = {
  lines: linesOf(quantityLineSchema),
  /** true: the units go back on hand (return movements); false: the return is only recorded. */
  restock: z.boolean(),
  /** Where restocked units go; left out: back where they were committed from. */
  location: locationCodeSchema.optional(),
  note: noteSchema.optional(),
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
/** What the domain's `returnOrder` takes: a return job's payload. */
export type ReturnInput = z.output<typeof returnPayload>;

const int = z.number().int();
const at = '2026-12-02T10:00:00.000Z';

const orderExample = {
  orderNumber: 'SO-1001',
  status: 'partially_fulfilled',
  currency: 'EUR',
  shipTo: { country: 'DE', postalCode: '10115' },
  reservationId: '5f0c7a1e-3f7b-4a47-9d3e-0d7f1b2c3a4b',
  version: 3,
  createdAt: at,
  updatedAt: at,
  confirmedAt: at,
  cancelledAt: null,
  expiredAt: null,
  lines: [
    {
      line: 0,
      sku: 'TSHIRT-RED-M',
      unitPrice: 1999,
      ordered: 2,
      openReserved: 1,
      fulfilled: 1,
      cancelled: 0,
      returned: 0,
      restocked: 0,
    },
  ],
};

/** An order as the API answers it and the orders' jobs return it. */
export const orderSchema = z
  .object({
    orderNumber: z.string(),
    status: z.enum(orderStatuses),
    currency: z.string(),
    shipTo: z.object({ country: z.string(), postalCode: z.string().nullable() }).nullable(),
    reservationId: z.string(),
    version: int.describe('rises by one with every change; events carry it'),
    createdAt: z.string(),
    updatedAt: z.string(),
    confirmedAt: z.string().nullable(),
    cancelledAt: z.string().nullable(),
    expiredAt: z.string().nullable(),
    lines: z.array(
      z.object({
        /** Index of the line in the order as placed. */
        line: int,
        sku: z.string(),
        unitPrice: int,
        ordered: int.describe('= openReserved + fulfilled + cancelled'),
        openReserved: int,
        fulfilled: int,
        cancelled: int.describe('released by a cancel or by the expiry'),
        returned: int.describe('≤ fulfilled'),
        restocked: int.describe('≤ returned'),
      }),
    ),
  })
  .meta({ example: orderExample });

/** What every order job returns: the order after the change and the ledger rows the job wrote. */
export const orderChangeSchema = z.object({
  order: orderSchema,
  movements: z.array(movementSchema).describe('the ledger rows this job wrote'),
});

/** An order with its reservation, ledger rows, returns and history (`GET /api/pms/orders/:orderNumber`). */
export const orderDetailSchema = orderSchema
  .extend({
    reservation: reservationSchema,
    movements: z
      .array(movementSchema)
      .describe('every ledger row of the order: reserve, commit, release, return'),
    returns: z.array(
      z.object({
        id: int,
        sku: z.string(),
        quantity: int,
        restock: z.boolean(),
        location: z.string().nullable(),
        movementId: int.nullable(),
        note: z.string().nullable(),
        actor: z.string().nullable(),
        jobId: z.string().nullable(),
        at: z.string(),
      }),
    ),
    history: z
      .array(
        z.object({
          action: z.enum(['create', ...orderActions]),
          fromStatus: z.enum(orderStatuses).nullable(),
          toStatus: z.enum(orderStatuses),
          version: int,
          actor: z.string().nullable(),
          jobId: z.string().nullable(),
          at: z.string(),
        }),
      )
      .describe('every change: who, when, which job'),
  })
  .meta({
    example: {
      ...orderExample,
      reservation: {
        id: orderExample.reservationId,
        reference: 'SO-1001',
        status: 'active',
        expiresAt: null,
        owner: 'order',
        createdAt: at,
        updatedAt: at,
        closedAt: null,
        version: 3,
        lines: [
          {
            line: 0,
            sku: 'TSHIRT-RED-M',
            location: 'default',
            quantity: 2,
            committed: 1,
            released: 0,
            rule: 'single_location',
          },
        ],
      },
      movements: [],
      returns: [],
      history: [
        {
          action: 'create',
          fromStatus: null,
          toStatus: 'reserved',
          version: 1,
          actor: 'pms',
          jobId: 'orders-1a2b',
          at,
        },
        {
          action: 'confirm',
          fromStatus: 'reserved',
          toStatus: 'confirmed',
          version: 2,
          actor: 'pms',
          jobId: 'orders-3c4d',
          at,
        },
        {
          action: 'fulfill',
          fromStatus: 'confirmed',
          toStatus: 'partially_fulfilled',
          version: 3,
          actor: 'pms',
          jobId: 'orders-5e6f',
          at,
        },
      ],
    },
  });
export type Order = z.output<typeof orderSchema>;
export type OrderChange = z.output<typeof orderChangeSchema>;
export type OrderDetail = z.output<typeof orderDetailSchema>;
