import { z } from 'zod';
import type { Config } from '../config.js';
import {
  adjustPayload,
  type Level,
  type Movement,
  noteSchema,
  onHandSchema,
  quantitySchema,
  referenceSchema,
  setPayload,
} from '../schemas/inventory.js';
import { type Location, locationCodeSchema, locationFields } from '../schemas/locations.js';
import { skuSchema, versionSchema } from '../schemas/products.js';
import { type Reservation, reservePayload, ttlSecondsSchema } from '../schemas/reservations.js';
import { defineJob, defineScheduler, type Scheduler } from './job.js';

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

export const reservationRefPayload = z.object({ reservationId: z.uuid() });
export const extendPayload = z.object({ reservationId: z.uuid(), ttlSeconds: ttlSecondsSchema });
export const expirePayload = z.object({ limit: z.number().int().min(1).max(10_000) });

export const createLocationPayload = z.object({ code: locationCodeSchema, ...locationFields });
export const updateLocationPayload = z.object({
  code: locationCodeSchema,
  ...locationFields,
  expectedVersion: versionSchema.optional(),
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
