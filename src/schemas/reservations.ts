import { z } from 'zod';
import { quantitySchema, referenceSchema } from './inventory.js';
import { locationCodeSchema } from './locations.js';
import { skuSchema } from './products.js';

export const ttlSecondsSchema = z.number().int('must be whole seconds').min(1).max(604_800);

const allocationRules = ['explicit', 'single_location', 'fewest_locations', 'split'] as const;
export type AllocationRule = (typeof allocationRules)[number];

const reservationStatuses = ['active', 'committed', 'released', 'expired'] as const;
export type ReservationStatus = (typeof reservationStatuses)[number];

const reservationLineSchema = z.object({
  /** Index of the request line this allocation serves; a split line appears once per location. */
  line: z.number().int(),
  sku: z.string(),
  location: z.string(),
  /** Allocated; what the line still holds is quantity − committed − released. */
  quantity: z.number().int(),
  committed: z.number().int(),
  released: z.number().int(),
  /** The allocation rule that chose the location. */
  rule: z.enum(allocationRules),
});

/** What manages a reservation; one with an owner changes only through it (its order's routes). */
const reservationOwnerSchema = z.enum(['order']);
export type ReservationOwner = z.output<typeof reservationOwnerSchema>;

export const reservationSchema = z
  .object({
    id: z.string(),
    reference: z.string(),
    status: z.enum(reservationStatuses),
    expiresAt: z.string().nullable().describe('null: held until committed or released (a confirmed order)'),
    owner: reservationOwnerSchema.nullable().describe('set: the reservation changes only through its owner'),
    createdAt: z.string(),
    updatedAt: z.string(),
    closedAt: z.string().nullable(),
    version: z.number().int(),
    lines: z.array(reservationLineSchema),
  })
  .meta({ id: 'Reservation' });
export type Reservation = z.output<typeof reservationSchema>;

/** What `POST /api/pms/reservations` (job reservation.create) takes; ttlSeconds defaults to 900. */
export const reservePayload = z.object({
  /** What the stock is held for, e.g. an order id or URI. */
  reference: referenceSchema,
  lines: z
    .array(z.object({ sku: skuSchema, quantity: quantitySchema, location: locationCodeSchema.optional() }))
    .min(1, 'needs at least 1 line')
    .max(1000, 'at most 1000 lines'),
  ttlSeconds: ttlSecondsSchema.default(900),
});
/**
 * What the domain's `createReservation` takes: a reservation job's payload, or an order's hold with
 * its owner (set by the order's own code, never by a request).
 */
export type ReserveInput = z.output<typeof reservePayload> & { owner?: ReservationOwner };
