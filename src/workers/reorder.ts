import type { AdvancedOptions } from 'bullmq';
import type { Config } from '../config.js';
import { levelKey } from '../domain/levels.js';
import {
  cancelPurchaseOrder,
  receivePurchaseOrder,
  resolvePurchaseOrder,
} from '../domain/purchase-orders.js';
import { checkRule } from '../domain/reorder-planner.js';
import { loadRuleStates, setRule } from '../domain/reorder-rules.js';
import { SupplierAttemptError } from '../errors/supplier-attempt-error.js';
import { horizonFor } from '../events/horizon.js';
import { checkJob, type ScanResult, sendJob } from '../queues/reorder.js';
import { applyOnce } from './apply-once.js';
import type { QueueHandlers, WorkerDeps } from './processor.js';
import { sendPurchaseOrder, supplierRetryDelayMs } from './reorder-send.js';

/**
 * The planner's trigger: reads `stock.moved` events after its cursor (`outbox_cursors` row
 * `reorder`), below the stable horizon so no event is skipped, and queues a `reorder.check` for
 * every rule of a level that moved whose available + incoming is at or below its point. The job
 * id is (rule, cursor position): a burst of movements read in one scan gives one check per rule,
 * and a scan repeated after a lost commit adds the same jobs again, which BullMQ keeps once.
 * Concurrent scans (several worker processes) skip a cursor another scan holds.
 */
export async function scanMovements(
  deps: WorkerDeps,
  limit: number,
): Promise<Omit<ScanResult, 'resentDrafts'>> {
  const horizon = await horizonFor(deps.db).refresh(1000);
  return deps.db.transaction(async (trx) => {
    const cursor = await trx('outbox_cursors')
      .where({ name: 'reorder' })
      .forUpdate()
      .skipLocked()
      .first('position');
    if (!cursor || cursor.position >= horizon) return { events: 0, levels: 0, checks: 0 };
    const { rows } = await trx.raw<{ rows: { seq: number; sku: string; location: string }[] }>(
      `select seq, data ->> 'sku' as sku, data ->> 'location' as location from events
       where seq > ? and seq <= ? and type = 'stock.moved' order by seq limit ?`,
      [cursor.position, horizon, limit],
    );
    const position = rows.length === limit ? rows[rows.length - 1]!.seq : horizon;
    const levels = [
      ...new Map(rows.map((r) => [levelKey(r), { sku: r.sku, location: r.location }])).values(),
    ];
    const due = levels.length > 0 ? (await loadRuleStates(trx, { levels })).filter((s) => s.due) : [];
    if (due.length > 0)
      await deps.queues.reorder.addBulk(due.map((s) => checkJob(s.rule.id, `scan-${position}`)));
    await trx('outbox_cursors').where({ name: 'reorder' }).update({ position, updated_at: trx.fn.now() });
    return { events: rows.length, levels: levels.length, checks: due.length };
  });
}

/**
 * A draft's send job is queued after the draft commits; if Redis loses it (a restart without
 * persistence), nothing else would ever send the draft. Drafts still unsent well past their send
 * delay get their send queued again. The send job id is one per order, so a send that is still
 * queued, delayed or backing off is kept as it is, and an order is never sent twice.
 */
async function resendStrandedDrafts(deps: WorkerDeps): Promise<number> {
  const { REORDER_SEND_DELAY_MS: delayMs, REORDER_DRAFT_RESEND_AFTER_MS: graceMs } = deps.config;
  const stranded: string[] = await deps
    .db('purchase_orders')
    .where({ status: 'draft' })
    .where('created_at', '<', new Date(Date.now() - delayMs - graceMs))
    .orderBy('created_at')
    .limit(1000)
    .pluck('id');
  if (stranded.length > 0) {
    const settings = { attempts: deps.config.SUPPLIER_SEND_ATTEMPTS, delayMs: 0 };
    await deps.queues.reorder.addBulk(stranded.map((id) => sendJob(id, settings)));
  }
  return stranded.length;
}

export const reorderHandlers = {
  'reorder-rule.set': async ({ deps, job, meta }, payload) => {
    const rule = await applyOnce(deps.db, job, meta, (trx) =>
      setRule(trx, payload, { windowDays: deps.config.REORDER_DEMAND_WINDOW_DAYS }),
    );
    // After commit: a new or changed rule may be due already.
    await deps.queues.reorder.addBulk([checkJob(rule.id, `rule-v${rule.version}`)]);
    return rule;
  },
  'reorder.scan': async ({ deps }, payload) => ({
    ...(await scanMovements(deps, payload.limit)),
    resentDrafts: await resendStrandedDrafts(deps),
  }),
  'reorder.check': async ({ deps, job, meta }, payload) => {
    const result = await applyOnce(deps.db, job, meta, (trx) => checkRule(trx, payload));
    // After commit (and again on a retry, from the stored result): the new draft goes out.
    if (result.createdPurchaseOrderId) {
      await deps.queues.reorder.addBulk([
        sendJob(result.createdPurchaseOrderId, {
          attempts: deps.config.SUPPLIER_SEND_ATTEMPTS,
          delayMs: deps.config.REORDER_SEND_DELAY_MS,
        }),
      ]);
    }
    return result;
  },
  'purchase-order.send': sendPurchaseOrder,
  'purchase-order.receive': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => receivePurchaseOrder(trx, payload)),
  'purchase-order.cancel': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => cancelPurchaseOrder(trx, payload)),
  'purchase-order.resolve': async ({ deps, job, meta }, payload) => {
    const order = await applyOnce(deps.db, job, meta, (trx) => resolvePurchaseOrder(trx, payload));
    // After commit (and again on a retry, from the stored result): a resend is a new round of
    // attempts, its job named by the order's version so that it is queued once.
    if (payload.resolution.action === 'resend' && order.status === 'sent') {
      await deps.queues.reorder.addBulk([
        sendJob(order.id, { attempts: deps.config.SUPPLIER_SEND_ATTEMPTS, delayMs: 0 }, `v${order.version}`),
      ]);
    }
    return order;
  },
} satisfies QueueHandlers<'reorder'>;

/** Worker settings of the reorder queue: the supplier backoff (Retry-After wins when given). */
export function reorderWorkerSettings(config: Config): AdvancedOptions {
  const settings = { baseMs: config.SUPPLIER_BACKOFF_MS, maxMs: config.SUPPLIER_BACKOFF_MAX_MS };
  return {
    backoffStrategy: (attemptsMade, type, error) => {
      if (type !== 'supplier') throw new Error(`Unknown backoff type ${type} on the reorder queue`);
      if (error instanceof SupplierAttemptError && error.retryAfterMs !== undefined)
        return error.retryAfterMs;
      return supplierRetryDelayMs(attemptsMade, settings);
    },
  };
}
