import type { Knex } from 'knex';
import type { JobName, JobNamed } from '../queues/catalog.js';
import type { PayloadOf, ResultOf } from '../queues/job.js';
import type { CacheChanges } from './read-cache.js';

type ChangesOf<N extends JobName> = (
  db: Knex,
  payload: PayloadOf<JobNamed<N>>,
  result: ResultOf<JobNamed<N>>,
) => CacheChanges | undefined | Promise<CacheChanges | undefined>;

const product = (payload: { sku: string }): CacheChanges => ({
  products: [payload.sku],
  // Creating a product gives it stock levels; every change can move it between list pages.
  stock: [payload.sku],
  productLists: true,
});
const stockOf = (payload: { sku: string }): CacheChanges => ({ stock: [payload.sku] });
const linesOf = (result: { lines: { sku: string }[] }): CacheChanges => ({
  stock: result.lines.map((l) => l.sku),
});
/** Order jobs and purchase-order receipts answer with the ledger rows they wrote. */
const movementsOf = (result: { movements: { sku: string }[] }): CacheChanges => ({
  stock: result.movements.map((m) => m.sku),
});
/** A purchase order's lines raise or lower `incoming` of their skus. */
const purchaseOrderLines = async (db: Knex, purchaseOrderId: string): Promise<CacheChanges> => ({
  stock: await db('purchase_order_lines')
    .distinct()
    .where({ purchase_order_id: purchaseOrderId })
    .pluck('sku'),
});
const nothing = () => undefined;

/**
 * What each job changes that the read cache holds: every job of the catalogue must say (a job
 * without an entry is a compile error), so a new job cannot silently leave stale reads behind.
 */
export const jobCacheChanges: { [N in JobName]: ChangesOf<N> } = {
  'product.create': (_db, payload) => product(payload),
  'product.update': (_db, payload) => product(payload),
  'product.archive': (_db, payload) => product(payload),
  'product.publish': (_db, payload) => product(payload),
  'location.create': () => ({ locations: true }),
  'location.update': () => ({ locations: true }),
  'inventory.adjust': (_db, payload) => ({ stock: payload.movements.map((m) => m.sku) }),
  'inventory.set': (_db, payload) => stockOf(payload),
  'inventory.transfer': (_db, payload) => stockOf(payload),
  'inventory.set-safety-stock': (_db, payload) => stockOf(payload),
  'reservation.create': (_db, payload) => ({ stock: payload.lines.map((l) => l.sku) }),
  'reservation.commit': (_db, _payload, result) => linesOf(result),
  'reservation.release': (_db, _payload, result) => linesOf(result),
  // A new expiry changes no figure of the stock status.
  'reservation.extend': nothing,
  'reservation.expire-due': async (db, _payload, result) => {
    if (result.reservationIds.length === 0) return undefined;
    const rows: { sku: string }[] = await db('reservation_lines')
      .distinct('sku')
      .whereIn('reservation_id', result.reservationIds);
    return { stock: rows.map((r) => r.sku) };
  },
  'order.create': (_db, _payload, result) => movementsOf(result),
  'order.confirm': nothing,
  'order.cancel': (_db, _payload, result) => movementsOf(result),
  'order.fulfill': (_db, _payload, result) => movementsOf(result),
  'order.return': (_db, _payload, result) => movementsOf(result),
  'inbound.pms-event': (_db, payload, result) => {
    if (!result.applied) return undefined;
    switch (payload.type) {
      case 'product.upserted':
      case 'product.archived':
        return product(payload.data);
      case 'inventory.adjusted':
        return { stock: payload.data.movements.map((m) => m.sku) };
      case 'inventory.counted':
        return stockOf(payload.data);
      case 'order.created':
      case 'order.cancelled':
        return movementsOf(result.result as { movements: { sku: string }[] });
    }
  },
  // Rules are not cached; their purchase order lines move `incoming`, which the stock status shows.
  'reorder-rule.set': nothing,
  'reorder.scan': nothing,
  'reorder.check': (_db, _payload, result) =>
    result.purchaseOrderId === undefined ? undefined : { stock: [result.sku] },
  'purchase-order.send': (db, _payload, result) => purchaseOrderLines(db, result.purchaseOrderId),
  'purchase-order.receive': (db, _payload, result) => purchaseOrderLines(db, result.id),
  'purchase-order.cancel': (db, _payload, result) => purchaseOrderLines(db, result.id),
  'purchase-order.resolve': (db, _payload, result) => purchaseOrderLines(db, result.id),
  'image.process': nothing,
  'image.rollback': nothing,
  'image.delete': nothing,
  'webhook.deliver': nothing,
  'webhook.replay': nothing,
  'maintenance.prune-applied-jobs': nothing,
  'maintenance.relay-outbox': nothing,
  'maintenance.sweep-deliveries': nothing,
  'maintenance.prune-events': nothing,
  'maintenance.prune-job-runs': nothing,
  'maintenance.warm-cache': nothing,
  'maintenance.evaluate-alerts': nothing,
  'maintenance.compact-reports': nothing,
};

export async function cacheChangesOf(
  db: Knex,
  name: string,
  payload: unknown,
  result: unknown,
): Promise<CacheChanges | undefined> {
  const changesOf = (jobCacheChanges as Record<string, ChangesOf<JobName> | undefined>)[name];
  return changesOf?.(db, payload as never, result as never);
}
