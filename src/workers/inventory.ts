import { inventoryBatch, inventoryJobs } from '../domain/inventory/batch.js';
import { createLocation, updateLocation } from '../domain/locations.js';
import { expireDue } from '../domain/orders.js';
import { commitReservation, extendReservation, releaseReservation } from '../domain/reservations.js';
import { applyOnce, batched } from './group-commit.js';
import type { QueueHandlers } from './processor.js';

/**
 * Jobs that lock levels only go through the group-commit executor with the inventory's batch
 * definition. Jobs that lock a reservation first (commit, release, extend, expiry) and location
 * jobs run alone: their lock order is not the batch's.
 */
export const inventoryHandlers = {
  'location.create': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => createLocation(trx, payload)),
  'location.update': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => updateLocation(trx, payload)),
  'inventory.adjust': (ctx, payload) => batched(ctx, inventoryBatch, inventoryJobs.adjust(payload)),
  'inventory.set': (ctx, payload) => batched(ctx, inventoryBatch, inventoryJobs.count(payload)),
  'inventory.transfer': (ctx, payload) => batched(ctx, inventoryBatch, inventoryJobs.transfer(payload)),
  'inventory.set-safety-stock': (ctx, payload) =>
    batched(ctx, inventoryBatch, inventoryJobs.setSafetyStock(payload)),
  'reservation.create': (ctx, payload) => batched(ctx, inventoryBatch, inventoryJobs.reserve(payload)),
  'reservation.commit': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => commitReservation(trx, payload)),
  'reservation.release': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => releaseReservation(trx, payload)),
  'reservation.extend': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => extendReservation(trx, payload)),
  // Orders' reservations expire with their orders, in this transaction.
  'reservation.expire-due': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => expireDue(trx, payload)),
} satisfies QueueHandlers<'inventory'>;
