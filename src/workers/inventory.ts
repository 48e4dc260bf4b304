import { createLocation, updateLocation } from '../domain/locations.js';
import { expireDue } from '../domain/orders.js';
import {
  commitReservation,
  createReservation,
  extendReservation,
  releaseReservation,
} from '../domain/reservations.js';
import { adjustStock, countStock, setSafetyStock, transferStock } from '../domain/stock.js';
import { applyOnce } from './apply-once.js';
import type { QueueHandlers } from './processor.js';

export const inventoryHandlers = {
  'location.create': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => createLocation(trx, payload)),
  'location.update': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => updateLocation(trx, payload)),
  'inventory.adjust': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => adjustStock(trx, payload)),
  'inventory.set': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => countStock(trx, payload)),
  'inventory.transfer': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => transferStock(trx, payload)),
  'inventory.set-safety-stock': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => setSafetyStock(trx, payload)),
  'reservation.create': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => createReservation(trx, payload)),
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
