import { cancelOrder, confirmOrder, createOrder, fulfillOrder } from '../domain/orders.js';
import { returnOrder } from '../domain/orders-returns.js';
import { applyOnce } from './apply-once.js';
import type { QueueHandlers } from './processor.js';

/** Each order job drives its reservation through the inventory's domain functions, in its one transaction. */
export const orderHandlers = {
  'order.create': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => createOrder(trx, payload)),
  'order.confirm': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => confirmOrder(trx, payload)),
  'order.cancel': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => cancelOrder(trx, payload)),
  'order.fulfill': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => fulfillOrder(trx, payload)),
  'order.return': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => returnOrder(trx, payload)),
} satisfies QueueHandlers<'orders'>;
