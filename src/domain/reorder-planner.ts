import type { Knex } from 'knex';
import { DomainError } from '../errors/domain-error.js';
import { appendEvent } from '../events/outbox.js';
import type { QuantityTerms } from '../schemas/purchase-orders.js';
import {
  type LineRow,
  type PurchaseOrderRow,
  recordOrderEvent,
  setStatus,
  termColumns,
  termsOf,
} from './purchase-orders.js';
import { orderQuantity } from './reorder-point.js';
import { loadRuleStates, type RuleState, storeLevelReorderPoint } from './reorder-rules.js';

/**
 * Why a rule that is due could not order. `purchase_order_unresolved`: a line of the rule is on an
 * order that may have reached the supplier without an answer we could take; ordering again (under
 * a new Idempotency-Key) could place the same need twice, so an operator decides first.
 */
export type SkipReason =
  | 'purchase_order_unresolved'
  | 'supplier_inactive'
  | 'product_archived'
  | 'nothing_to_order';

export interface CheckResult {
  ruleId: number;
  sku: string;
  location: string;
  outcome: 'ordered' | 'updated' | 'unchanged' | 'above_point' | 'skipped';
  reason?: SkipReason;
  reorderPoint: number;
  /** available + incoming, this rule's own draft line left out. */
  position: number;
  purchaseOrderId?: string;
  quantity?: number;
  /** A draft purchase order this check created: the caller queues its send after commit. */
  createdPurchaseOrderId?: string;
}

const sameTerms = (a: QuantityTerms, b: QuantityTerms) =>
  (Object.keys(a) as (keyof QuantityTerms)[]).every((key) => a[key] === b[key]);

/** The rule's line on a draft purchase order, with that order locked (a send cannot take it meanwhile). */
async function lockDraftLine(
  db: Knex,
  ruleId: number,
): Promise<{ line: LineRow; order: PurchaseOrderRow } | undefined> {
  const order = (await db('purchase_orders')
    .where({ status: 'draft' })
    .whereExists(
      db('purchase_order_lines')
        .whereRaw('purchase_order_lines.purchase_order_id = purchase_orders.id')
        .where({ rule_id: ruleId }),
    )
    .forUpdate()
    .first()) as PurchaseOrderRow | undefined;
  if (order?.status !== 'draft') return undefined;
  const line = (await db<LineRow>('purchase_order_lines')
    .where({ purchase_order_id: order.id, rule_id: ruleId })
    .first()) as LineRow | undefined;
  return line ? { line, order } : undefined;
}

/** The draft purchase order of a supplier at a location, created when there is none; locked. */
async function lockOrCreateDraft(
  db: Knex,
  supplier: string,
  location: string,
): Promise<{ order: PurchaseOrderRow; created: boolean }> {
  // Another check may create or a send may take the draft meanwhile: try again (bounded).
  for (let tries = 0; tries < 5; tries += 1) {
    const { rows } = await db.raw<{ rows: PurchaseOrderRow[] }>(
      `insert into purchase_orders (supplier_code, location) values (?, ?)
       on conflict (supplier_code, location) where status = 'draft' do nothing
       returning *`,
      [supplier, location],
    );
    if (rows[0]) return { order: rows[0], created: true };
    const existing = (await db('purchase_orders')
      .where({ supplier_code: supplier, location, status: 'draft' })
      .forUpdate()
      .first()) as PurchaseOrderRow | undefined;
    if (existing?.status === 'draft') return { order: existing, created: false };
  }
  throw new Error(`could not lock a draft purchase order of ${supplier} at ${location}`);
}

async function recordCheck(db: Knex, result: CheckResult): Promise<void> {
  await db.raw(
    `insert into reorder_rule_checks (rule_id, checked_at, job_id, outcome, skip_reason, reorder_point, position, purchase_order_id)
     values (?, now(), nullif(current_setting('stockflow.job_id', true), ''), ?, ?, ?, ?, ?)
     on conflict (rule_id) do update set checked_at = excluded.checked_at, job_id = excluded.job_id,
       outcome = excluded.outcome, skip_reason = excluded.skip_reason, reorder_point = excluded.reorder_point,
       position = excluded.position, purchase_order_id = excluded.purchase_order_id`,
    [
      result.ruleId,
      result.outcome,
      result.reason ?? null,
      result.reorderPoint,
      result.position,
      result.purchaseOrderId ?? null,
    ],
  );
  await storeLevelReorderPoint(db, result.ruleId);
}

function skipReason(state: RuleState, terms: QuantityTerms): SkipReason | undefined {
  if (state.productArchived) return 'product_archived';
  if (!state.supplier.active) return 'supplier_inactive';
  if (terms.quantity === 0) return 'nothing_to_order';
  return undefined;
}

/** A line that moves to another supplier's draft leaves its old one (an emptied draft is cancelled). */
async function removeLine(db: Knex, draft: { line: LineRow; order: PurchaseOrderRow }): Promise<void> {
  await db('purchase_order_lines').where({ purchase_order_id: draft.order.id, sku: draft.line.sku }).delete();
  const left = await db('purchase_order_lines').where({ purchase_order_id: draft.order.id }).first('sku');
  if (left) {
    await db('purchase_orders').where({ id: draft.order.id }).update({ updated_at: db.fn.now() });
    await recordOrderEvent(db, draft.order.id, 'purchase_order.updated', {
      change: { removed: draft.line.sku, reason: 'rule_changed_supplier' },
    });
  } else {
    await setStatus(db, draft.order.id, 'cancelled', {
      cancel_reason: 'rule_changed_supplier',
      closed_at: db.fn.now(),
    });
    await recordOrderEvent(db, draft.order.id, 'purchase_order.cancelled', {
      reason: 'rule_changed_supplier',
    });
  }
}

/**
 * Checks one rule and creates or updates its one line on a draft purchase order. Idempotent: the
 * quantity is computed from the current stock with this line's own quantity left out of incoming,
 * so running it again with nothing changed leaves the line as it is (`unchanged`); the unique
 * index on a rule's draft line refuses a second line whatever happens. A rule that is due but
 * cannot order records why and writes `reorder.skipped`.
 */
export async function checkRule(db: Knex, input: { ruleId: number }): Promise<CheckResult> {
  // Checks of one rule queue behind each other here.
  const locked = await db('reorder_rules').where({ id: input.ruleId }).forUpdate().first('id');
  if (!locked)
    throw new DomainError('not_found', `Reorder rule ${input.ruleId} does not exist`, {
      ruleId: input.ruleId,
    });
  const [state] = await loadRuleStates(db, { ids: [input.ruleId] });
  const rule = state!.rule;
  let draft = await lockDraftLine(db, rule.id);
  const incoming = state!.stock.incoming - (draft?.line.outstanding ?? 0);
  const position = state!.stock.available + incoming;
  const base = {
    ruleId: rule.id,
    sku: rule.sku,
    location: rule.location,
    reorderPoint: state!.point.point,
    position,
  };
  const finish = async (result: CheckResult) => {
    await recordCheck(db, result);
    return result;
  };
  if (position > state!.point.point) {
    return finish({ ...base, outcome: 'above_point', purchaseOrderId: draft?.order.id });
  }
  const terms = orderQuantity({
    reorderPoint: state!.point.point,
    available: state!.stock.available,
    incoming,
    reorderQuantity: rule.reorder_quantity,
    maxLevel: rule.max_level,
    minOrderQuantity: state!.supplier.minOrderQuantity,
    orderMultiple: state!.supplier.orderMultiple,
  });
  const unresolved = (await db('purchase_order_lines')
    .where({ rule_id: rule.id, po_status: 'unresolved' })
    .first('purchase_order_id')) as { purchase_order_id: string } | undefined;
  const reason = unresolved ? 'purchase_order_unresolved' : skipReason(state!, terms);
  if (reason) {
    const result = {
      ...base,
      outcome: 'skipped' as const,
      reason,
      purchaseOrderId: unresolved?.purchase_order_id ?? draft?.order.id,
    };
    await appendEvent(db, {
      type: 'reorder.skipped',
      aggregate: { type: 'reorder_rule', id: String(rule.id) },
      data: { ...result, supplier: rule.supplier_code, point: state!.point, terms },
    });
    return finish(result);
  }
  if (draft && draft.order.supplier_code !== rule.supplier_code) {
    await removeLine(db, draft);
    draft = undefined;
  }
  if (draft) {
    if (sameTerms(termsOf(draft.line), terms)) {
      return finish({
        ...base,
        outcome: 'unchanged',
        purchaseOrderId: draft.order.id,
        quantity: terms.quantity,
      });
    }
    await db('purchase_order_lines')
      .where({ purchase_order_id: draft.order.id, sku: rule.sku })
      .update({ ...termColumns(terms), updated_at: db.fn.now() });
    await db('purchase_orders').where({ id: draft.order.id }).update({ updated_at: db.fn.now() });
    await recordOrderEvent(db, draft.order.id, 'purchase_order.updated', {
      change: { sku: rule.sku, from: draft.line.quantity, to: terms.quantity },
    });
    return finish({ ...base, outcome: 'updated', purchaseOrderId: draft.order.id, quantity: terms.quantity });
  }
  const { order, created } = await lockOrCreateDraft(db, rule.supplier_code, rule.location);
  await db('purchase_order_lines').insert({
    purchase_order_id: order.id,
    po_status: 'draft',
    sku: rule.sku,
    location: rule.location,
    rule_id: rule.id,
    ...termColumns(terms),
  });
  if (!created) await db('purchase_orders').where({ id: order.id }).update({ updated_at: db.fn.now() });
  await recordOrderEvent(
    db,
    order.id,
    created ? 'purchase_order.created' : 'purchase_order.updated',
    created ? {} : { change: { added: rule.sku, quantity: terms.quantity } },
  );
  return finish({
    ...base,
    outcome: 'ordered',
    purchaseOrderId: order.id,
    quantity: terms.quantity,
    ...(created ? { createdPurchaseOrderId: order.id } : {}),
  });
}
