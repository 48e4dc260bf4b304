import { sendPurchaseOrder } from '../domain/purchase-order-send.js';
import {
  cancelPurchaseOrder,
  receivePurchaseOrder,
  resolvePurchaseOrder,
} from '../domain/purchase-orders.js';
import { checkRule } from '../domain/reorder-planner.js';
import { setRule } from '../domain/reorder-rules.js';
import { resendStrandedDrafts, scanMovements } from '../domain/reorder-scan.js';
import { addFollowUps } from '../queues/follow-ups.js';
import { isLastAttempt } from '../queues/job.js';
import { applyOnce } from './group-commit.js';
import type { QueueHandlers } from './processor.js';

/** The follow-ups of rule changes, checks and resends are chosen in src/queues/follow-ups.ts. */
export const reorderHandlers = {
  'reorder-rule.set': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) =>
      setRule(trx, payload, { windowDays: deps.config.REORDER_DEMAND_WINDOW_DAYS }),
    ),
  'reorder.scan': async ({ deps }, payload) => ({
    ...(await scanMovements(deps.db, payload.limit, (followUps) => addFollowUps(deps, followUps))),
    resentDrafts: await resendStrandedDrafts(deps.db, deps.config, (followUps) =>
      addFollowUps(deps, followUps),
    ),
  }),
  'reorder.check': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => checkRule(trx, payload)),
  'purchase-order.send': ({ deps, job, log }, payload) =>
    sendPurchaseOrder(
      deps.db,
      { purchaseOrderId: payload.purchaseOrderId, jobId: job.id, lastAttempt: isLastAttempt(job) },
      { ...deps, log, invalidateStock: (skus) => deps.cache.invalidate({ stock: skus }) },
    ),
  'purchase-order.receive': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => receivePurchaseOrder(trx, payload)),
  'purchase-order.cancel': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => cancelPurchaseOrder(trx, payload)),
  'purchase-order.resolve': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => resolvePurchaseOrder(trx, payload)),
} satisfies QueueHandlers<'reorder'>;
