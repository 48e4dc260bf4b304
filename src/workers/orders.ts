import { inventoryBatch, inventoryJobs } from '../domain/inventory/batch.js';
import { cancelOrder, confirmOrder, fulfillOrder } from '../domain/orders.js';
import { returnOrder } from '../domain/orders-returns.js';
import { applyOnce, batched } from './group-commit.js';
import type { QueueHandlers } from './processor.js';

/**
 * Each order job drives its reservation through the inventory's domain functions, in its one
 * transaction. A new order locks levels only: it goes through the group-commit executor with the
 * inventory's batch definition; the others lock their order first and run alone.
 */
export const orderHandlers = {
  'order.create': (ctx, payload) => batched(ctx, inventoryBatch, inventoryJobs.createOrder(payload)),
  'order.confirm': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => confirmOrder(trx, payload)),
  'order.cancel': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => cancelOrder(trx, payload)),
  'order.fulfill': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => fulfillOrder(trx, payload)),
  'order.return': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => returnOrder(trx, payload)),
} satisfies QueueHandlers<'orders'>;
