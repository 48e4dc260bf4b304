import { z } from 'zod';
import type { Config } from '../config.js';
import type { Movement } from '../domain/ledger.js';
import type { Level } from '../domain/levels.js';
import type { Location } from '../domain/locations.js';
import type { Reservation } from '../domain/reservations.js';
import { defineJob, defineScheduler, type Scheduler } from './job.js';
import { skuSchema } from './products.js';

export const locationCodeSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9._-]{1,64}$/,
    'location must be a code of 1-64 letters, digits, dot, underscore or hyphen',
  )
  .refine((code) => code !== '.' && code !== '..', 'location must not be . or ..')
  .meta({ example: 'default' });

/** Stock quantities are whole units; a billion keeps every sum far inside bigint and a JS number. */
const maxQuantity = 1_000_000_000;
export const quantitySchema = z
  .number()
  .int('must be a whole number of units')
  .min(1, 'must be at least 1')
  .max(maxQuantity);
const onHandSchema = z.number().int('must be a whole number of units').min(0).max(maxQuantity);
const referenceSchema = z.string().min(1).max(500);
/** A unit cost in minor units of the product's currency. */
export const unitCostSchema = z.number().int('must be whole minor units').min(0).max(1_000_000_000_000);
const noteSchema = z.string().max(2000);

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
export const adjustPayload = z.object({
  movements: z.array(adjustLineSchema).min(1, 'needs at least 1 line').max(1000, 'at most 1000 lines'),
});

export const setPayload = z.object({
  sku: skuSchema,
  location: locationCodeSchema,
  onHand: onHandSchema,
  expectedOnHand: onHandSchema.optional(),
  reason: z.literal('count').default('count'),
  reference: referenceSchema.optional(),
  note: noteSchema.optional(),
});

export const transferPayload = z
  .object({
    sku: skuSchema,
    from: locationCodeSchema,
    to: locationCodeSchema,
    quantity: quantitySchema,
    reference: referenceSchema.optional(),
    note: noteSchema.optional(),
  })
  .refine((t) => t.from !== t.to, { path: ['to'], message: 'must differ from from' });

export const safetyStockPayload = z.object({
  sku: skuSchema,
  location: locationCodeSchema,
  safetyStock: onHandSchema,
});

export const ttlSecondsSchema = z.number().int('must be whole seconds').min(1).max(604_800);

export const reservePayload = z.object({
  /** What the stock is held for, e.g. an order id or URI. */
  reference: referenceSchema,
  lines: z
    .array(z.object({ sku: skuSchema, quantity: quantitySchema, location: locationCodeSchema.optional() }))
    .min(1, 'needs at least 1 line')
    .max(1000, 'at most 1000 lines'),
  ttlSeconds: ttlSecondsSchema.default(900),
});

export const reservationRefPayload = z.object({ reservationId: z.uuid() });
export const extendPayload = z.object({ reservationId: z.uuid(), ttlSeconds: ttlSecondsSchema });
export const expirePayload = z.object({ limit: z.number().int().min(1).max(10_000) });

export const locationFields = {
  name: z.string().trim().min(1).max(200),
  /** Allocation order: lower first. */
  priority: z.number().int().min(0).max(1_000_000).default(100),
  /** An inactive location is skipped by allocation and gets no levels for new products. */
  active: z.boolean().default(true),
};
export const createLocationPayload = z.object({ code: locationCodeSchema, ...locationFields });
export const updateLocationPayload = z.object({
  code: locationCodeSchema,
  ...locationFields,
  expectedVersion: z.number().int().min(1).optional(),
});

export const inventoryJobs = {
  createLocation: defineJob<Location>()({
    name: 'location.create',
    queue: 'inventory',
    payload: createLocationPayload,
  }),
  updateLocation: defineJob<Location>()({
    name: 'location.update',
    queue: 'inventory',
    payload: updateLocationPayload,
  }),
  adjust: defineJob<{ movements: Movement[] }>()({
    name: 'inventory.adjust',
    queue: 'inventory',
    payload: adjustPayload,
  }),
  set: defineJob<{ movement: Movement }>()({
    name: 'inventory.set',
    queue: 'inventory',
    payload: setPayload,
  }),
  transfer: defineJob<{ movements: Movement[] }>()({
    name: 'inventory.transfer',
    queue: 'inventory',
    payload: transferPayload,
  }),
  setSafetyStock: defineJob<Level>()({
    name: 'inventory.set-safety-stock',
    queue: 'inventory',
    payload: safetyStockPayload,
  }),
  reserve: defineJob<Reservation>()({
    name: 'reservation.create',
    queue: 'inventory',
    payload: reservePayload,
  }),
  commit: defineJob<Reservation>()({
    name: 'reservation.commit',
    queue: 'inventory',
    payload: reservationRefPayload,
  }),
  release: defineJob<Reservation>()({
    name: 'reservation.release',
    queue: 'inventory',
    payload: reservationRefPayload,
  }),
  extend: defineJob<Reservation>()({
    name: 'reservation.extend',
    queue: 'inventory',
    payload: extendPayload,
  }),
  expireReservations: defineJob<{ expired: number; reservationIds: string[] }>()({
    name: 'reservation.expire-due',
    queue: 'inventory',
    payload: expirePayload,
    options: { attempts: 3 },
  }),
};

export const inventorySchedulers = (
  config: Pick<Config, 'RESERVATION_EXPIRY_INTERVAL_MS' | 'RESERVATION_EXPIRY_BATCH'>,
): Scheduler[] => [
  defineScheduler(inventoryJobs.expireReservations, {
    id: 'expire-reservations',
    every: config.RESERVATION_EXPIRY_INTERVAL_MS,
    payload: { limit: config.RESERVATION_EXPIRY_BATCH },
    // A run leaves nothing worth keeping (its events record what expired), so it removes itself.
    // Not `{ count }` or `{ age }`: BullMQ applies those to the whole queue's finished jobs.
    options: { removeOnComplete: true },
  }),
];
