import { z } from 'zod';
import { locationCodeSchema } from './locations.js';
import { skuSchema } from './products.js';

/** Stock quantities are whole units; a billion keeps every sum far inside bigint and a JS number. */
const maxQuantity = 1_000_000_000;
export const quantitySchema = z
  .number()
  .int('must be a whole number of units')
  .min(1, 'must be at least 1')
  .max(maxQuantity);
export const onHandSchema = z.number().int('must be a whole number of units').min(0).max(maxQuantity);
export const referenceSchema = z.string().min(1).max(500);
/** A unit cost in minor units of the product's currency. */
export const unitCostSchema = z.number().int('must be whole minor units').min(0).max(1_000_000_000_000);
export const noteSchema = z.string().max(2000);

export const adjustReasons = [
  'received',
  'returned',
  'damaged',
  'lost',
  'found',
  'correction',
  'other',
] as const;
export type AdjustReason = (typeof adjustReasons)[number];
const increasingReasons = new Set<AdjustReason>(['received', 'returned', 'found']);
const decreasingReasons = new Set<AdjustReason>(['damaged', 'lost']);

export const adjustLineSchema = z
  .object({
    sku: skuSchema,
    location: locationCodeSchema,
    delta: z
      .number()
      .int('delta must be a whole number of units')
      .min(-maxQuantity)
      .max(maxQuantity)
      .refine((d) => d !== 0, 'delta must not be zero'),
    reason: z.enum(adjustReasons),
    reference: referenceSchema.optional(),
    note: noteSchema.optional(),
    /** Compare-and-set: the job fails stale_quantity unless on_hand is exactly this before the line applies. */
    expectedOnHand: onHandSchema.optional(),
    /**
     * What one unit received cost, in minor units of the product's currency (reports value stock by
     * moving average, docs/reports.md). Added later: jobs queued before it carry none, which is valid.
     */
    unitCost: unitCostSchema.optional(),
  })
  .superRefine((line, ctx) => {
    if (line.unitCost !== undefined && line.reason !== 'received') {
      ctx.addIssue({
        code: 'custom',
        path: ['unitCost'],
        message: 'only a line with reason received carries a cost',
      });
    }
    if (increasingReasons.has(line.reason) && line.delta < 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['delta'],
        message: `must be positive for reason ${line.reason}`,
      });
    }
    if (decreasingReasons.has(line.reason) && line.delta > 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['delta'],
        message: `must be negative for reason ${line.reason}`,
      });
    }
  });

// Compatibility: payloads only gain optional fields; a worker must accept jobs queued by the
// previous release, so never make a field required or narrow a type without a migration note.
/** An adjustment: the body of `POST /api/pms/inventory/adjust`, the inbound `inventory.adjusted`, the job. */
export const adjustPayload = z.object({
  movements: z.array(adjustLineSchema).min(1, 'needs at least 1 line').max(1000, 'at most 1000 lines'),
});

/** A count: the body of `POST /api/pms/inventory/set`, the inbound `inventory.counted`, the job. */
export const setPayload = z.object({
  sku: skuSchema,
  location: locationCodeSchema,
  onHand: onHandSchema,
  expectedOnHand: onHandSchema.optional(),
  reason: z.literal('count').default('count'),
  reference: referenceSchema.optional(),
  note: noteSchema.optional(),
});

export const movementKinds = [
  'receipt',
  'adjustment',
  'sale',
  'return',
  'transfer_out',
  'transfer_in',
  'reserve',
  'release',
  'commit',
  'count',
] as const;
export const movementKindSchema = z.enum(movementKinds);
export type MovementKind = z.output<typeof movementKindSchema>;

/** One row of the append-only stock ledger, as the API answers it and `stock.moved` carries it. */
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
    /** Correlation id: the job that wrote the movement. */
    jobId: z.string().nullable(),
    createdAt: z.string(),
  })
  .meta({ id: 'Movement' });
export type Movement = z.output<typeof movementSchema>;

/**
 * A ledger row as the domain appends it (`insertMovements`, src/domain/ledger.ts): the trigger fills
 * in the figures after it, the id, the actor and the job.
 */
const newMovementSchema = movementSchema
  .pick({
    kind: true,
    sku: true,
    location: true,
    delta: true,
    reference: true,
    note: true,
    reservationId: true,
  })
  .partial({ reference: true, note: true, reservationId: true })
  .extend({
    reason: z.string(),
    /** What one unit received cost (minor units); none: it comes in at the current average. */
    unitCost: unitCostSchema.nullish(),
  });
export type NewMovement = z.input<typeof newMovementSchema>;

/** A level's figures. Available = on_hand − reserved − safety_stock, never below 0. */
export const levelFigures = {
  onHand: z.number().int(),
  reserved: z.number().int(),
  available: z.number().int(),
  safetyStock: z.number().int(),
  incoming: z.number().int(),
};

/** A level (sku × location) as the API shows it. */
export const levelSchema = z
  .object({
    sku: z.string(),
    location: z.string(),
    ...levelFigures,
    version: z.number().int(),
    updatedAt: z.string(),
  })
  .meta({ id: 'Level' });
export type Level = z.output<typeof levelSchema>;

/** A sku's stock: its totals over every location, and each location's level (with whether it is active). */
export const stockStatusSchema = z.object({
  sku: z.string(),
  totals: z.object(levelFigures),
  locations: z.array(
    z.object({
      location: z.string(),
      active: z.boolean(),
      ...levelFigures,
      version: z.number().int(),
      updatedAt: z.string(),
    }),
  ),
});
export type StockStatus = z.output<typeof stockStatusSchema>;
