import type { Knex } from 'knex';
import { DomainError } from '../errors/domain-error.js';
import { appendEvent } from '../events/outbox.js';
import type { EventType } from '../schemas/event-types.js';
import { cursors } from '../schemas/fields.js';
import type {
  PurchaseOrder,
  PurchaseOrderLine,
  PurchaseOrderStatus,
  QuantityTerms,
} from '../schemas/purchase-orders.js';
import type { Resolution } from '../schemas/reorder.js';
import { lockLevels } from './inventory/lock.js';
import { insertMovements } from './ledger.js';
import { explainQuantity } from './reorder-point.js';
import { acceptanceProblems } from './reorder-supplier-protocol.js';

/**
 * Where a purchase order may go from each status (the database trigger
 * `stockflow_purchase_order_transition` refuses the same). `failed`: the order never reached the
 * supplier or the supplier refused it (a 4xx, a refused address); like `rejected` it no longer
 * counts as incoming and its rules may order again. `unresolved`: it may have reached the
 * supplier, but no answer could be taken (a 2xx outside the protocol, or every attempt without a
 * definite answer); it does not count as incoming either, but its rules do not order again until
 * an operator acknowledges it, sends it again (same Idempotency-Key) or cancels it.
 */
export const purchaseOrderTransitions: Record<PurchaseOrderStatus, readonly PurchaseOrderStatus[]> = {
  draft: ['sent', 'cancelled'],
  sent: ['acknowledged', 'rejected', 'failed', 'unresolved', 'cancelled'],
  unresolved: ['sent', 'acknowledged', 'cancelled'],
  acknowledged: ['partially_received', 'received', 'cancelled'],
  partially_received: ['received'],
  rejected: [],
  failed: [],
  received: [],
  cancelled: [],
};

/** Statuses whose lines count as incoming stock. */
export const openStatuses: readonly PurchaseOrderStatus[] = [
  'draft',
  'sent',
  'acknowledged',
  'partially_received',
];

export interface PurchaseOrderRow {
  id: string;
  number: number;
  supplier_code: string;
  location: string;
  status: PurchaseOrderStatus;
  supplier_reference: string | null;
  expected_date: string | null;
  answer: unknown;
  failure: Record<string, unknown> | null;
  cancel_reason: string | null;
  sent_at: Date | null;
  acknowledged_at: Date | null;
  closed_at: Date | null;
  version: number;
  created_at: Date;
  updated_at: Date;
}

export interface LineRow {
  purchase_order_id: string;
  po_status: PurchaseOrderStatus;
  sku: string;
  location: string;
  rule_id: number;
  quantity: number;
  accepted_quantity: number | null;
  received_quantity: number;
  unit_cost: number | null;
  basis: QuantityTerms['basis'];
  reorder_point: number;
  available: number;
  incoming: number;
  reorder_quantity: number | null;
  max_level: number | null;
  raw_quantity: number;
  min_order_quantity: number;
  order_multiple: number;
  outstanding: number;
}

const iso = (d: Date | null) => d?.toISOString() ?? null;
export const poNumber = (n: number) => `PO-${String(n).padStart(6, '0')}`;

export function termsOf(row: LineRow): QuantityTerms {
  return {
    basis: row.basis,
    reorderPoint: row.reorder_point,
    available: row.available,
    incoming: row.incoming,
    reorderQuantity: row.reorder_quantity,
    maxLevel: row.max_level,
    rawQuantity: row.raw_quantity,
    minOrderQuantity: row.min_order_quantity,
    orderMultiple: row.order_multiple,
    quantity: row.quantity,
  };
}

/** The columns a line stores for these terms. */
export const termColumns = (t: QuantityTerms) => ({
  quantity: t.quantity,
  basis: t.basis,
  reorder_point: t.reorderPoint,
  available: t.available,
  incoming: t.incoming,
  reorder_quantity: t.reorderQuantity,
  max_level: t.maxLevel,
  raw_quantity: t.rawQuantity,
  min_order_quantity: t.minOrderQuantity,
  order_multiple: t.orderMultiple,
});

const toLine = (row: LineRow): PurchaseOrderLine => {
  const terms = termsOf(row);
  return {
    sku: row.sku,
    location: row.location,
    ruleId: row.rule_id,
    quantity: row.quantity,
    acceptedQuantity: row.accepted_quantity,
    receivedQuantity: row.received_quantity,
    outstanding: row.outstanding,
    explanation: { ...terms, text: explainQuantity(terms) },
  };
};

function toPurchaseOrder(row: PurchaseOrderRow, lines: LineRow[]): PurchaseOrder {
  return {
    id: row.id,
    number: poNumber(row.number),
    supplier: row.supplier_code,
    location: row.location,
    status: row.status,
    supplierReference: row.supplier_reference,
    expectedDate: row.expected_date,
    failure: row.failure,
    cancelReason: row.cancel_reason,
    sentAt: iso(row.sent_at),
    acknowledgedAt: iso(row.acknowledged_at),
    closedAt: iso(row.closed_at),
    version: row.version,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    lines: lines.map(toLine),
  };
}

async function selectOrders(db: Knex, query: Knex.QueryBuilder): Promise<PurchaseOrder[]> {
  const rows = (await query) as PurchaseOrderRow[];
  if (rows.length === 0) return [];
  const lines = (await db<LineRow>('purchase_order_lines')
    .whereIn(
      'purchase_order_id',
      rows.map((r) => r.id),
    )
    .orderBy(['purchase_order_id', 'sku'])) as LineRow[];
  return rows.map((row) =>
    toPurchaseOrder(
      row,
      lines.filter((l) => l.purchase_order_id === row.id),
    ),
  );
}

// expected_date as text: a date has no time zone to shift.
const ordersQuery = (db: Knex) =>
  db('purchase_orders').select(
    db.raw(`purchase_orders.*, to_char(expected_date, 'YYYY-MM-DD') as expected_date`),
  );

/** A purchase order with its lines and every send attempt. */
export async function getPurchaseOrder(db: Knex, id: string): Promise<PurchaseOrder | undefined> {
  const [order] = await selectOrders(db, ordersQuery(db).where({ id }));
  if (!order) return undefined;
  const attempts = await db('purchase_order_attempts').where({ purchase_order_id: id }).orderBy('attempt');
  order.attempts = attempts.map((a) => ({
    attempt: a.attempt,
    jobId: a.job_id,
    startedAt: (a.started_at as Date).toISOString(),
    durationMs: a.duration_ms,
    statusCode: a.status_code,
    outcome: a.outcome,
    error: a.error,
    responseExcerpt: a.response_excerpt,
    retryAfterMs: a.retry_after_ms,
  }));
  return order;
}

/** Purchase orders newest first, keyset-paginated by number (`cursor` decoded by `cursors.purchaseOrder`). */
export async function listPurchaseOrders(
  db: Knex,
  query: { status?: PurchaseOrderStatus; supplier?: string; sku?: string; limit: number; cursor?: number },
): Promise<{ items: PurchaseOrder[]; nextCursor: string | null }> {
  const builder = ordersQuery(db)
    .orderBy('number', 'desc')
    .limit(query.limit + 1);
  if (query.status) builder.where('status', query.status);
  if (query.supplier) builder.where('supplier_code', query.supplier);
  if (query.sku) {
    builder.whereExists(
      db('purchase_order_lines')
        .whereRaw('purchase_order_lines.purchase_order_id = purchase_orders.id')
        .where('sku', query.sku),
    );
  }
  if (query.cursor !== undefined) builder.where('number', '<', query.cursor);
  const orders = await selectOrders(db, builder);
  const items = orders.slice(0, query.limit);
  const last = items[items.length - 1];
  return {
    items,
    nextCursor:
      orders.length > query.limit && last ? cursors.purchaseOrder.encode(Number(last.number.slice(3))) : null,
  };
}

/** Locks a purchase order (every transition starts here), or fails not_found. */
export async function lockPurchaseOrder(db: Knex, id: string): Promise<PurchaseOrderRow> {
  const row = (await db('purchase_orders').where({ id }).forUpdate().first()) as PurchaseOrderRow | undefined;
  if (!row)
    throw new DomainError('not_found', `Purchase order ${id} does not exist`, { purchaseOrderId: id });
  return row;
}

export function assertTransition(row: PurchaseOrderRow, to: PurchaseOrderStatus, action: string): void {
  if (purchaseOrderTransitions[row.status].includes(to)) return;
  throw new DomainError(
    'invalid_transition',
    `Purchase order ${poNumber(row.number)} is ${row.status}: it cannot be ${action}`,
    {
      purchaseOrderId: row.id,
      currentStatus: row.status,
      allowed: purchaseOrderTransitions[row.status],
    },
  );
}

export async function setStatus(
  db: Knex,
  id: string,
  status: PurchaseOrderStatus,
  fields: Record<string, unknown> = {},
): Promise<void> {
  await db('purchase_orders')
    .where({ id })
    .update({ status, ...fields });
}

/** Appends a purchase_order.* event carrying the order as it now stands, and returns that order. */
export async function recordOrderEvent(
  db: Knex,
  id: string,
  type: EventType,
  extra: Record<string, unknown> = {},
): Promise<PurchaseOrder> {
  const order = (await getPurchaseOrder(db, id))!;
  const { attempts: _, ...withoutAttempts } = order;
  await appendEvent(db, {
    type,
    aggregate: { type: 'purchase_order', id },
    data: { purchaseOrder: withoutAttempts, ...extra },
  });
  return order;
}

/**
 * Takes an acceptance: the accepted quantity of each line (left out: as ordered), the supplier's
 * reference and date, status `acknowledged`, and its event. The caller has checked the quantities
 * (`acceptanceProblems`) and that the order may be acknowledged.
 */
export async function acknowledgePurchaseOrder(
  db: Knex,
  order: Pick<PurchaseOrder, 'id' | 'lines'>,
  input: {
    reference?: string;
    expectedDate?: string;
    lines?: { sku: string; quantity: number }[];
    /** The supplier's answer as it came (null when an operator resolved the order). */
    answer: unknown;
    /** Extra data of the event (how the order was resolved). */
    event?: Record<string, unknown>;
  },
): Promise<PurchaseOrder> {
  const accepted = new Map((input.lines ?? []).map((l) => [l.sku, l.quantity]));
  for (const line of order.lines) {
    await db('purchase_order_lines')
      .where({ purchase_order_id: order.id, sku: line.sku })
      .update({ accepted_quantity: accepted.get(line.sku) ?? line.quantity, updated_at: db.fn.now() });
  }
  await setStatus(db, order.id, 'acknowledged', {
    supplier_reference: input.reference ?? null,
    expected_date: input.expectedDate ?? null,
    answer: input.answer === null ? null : JSON.stringify(input.answer),
    failure: null,
    acknowledged_at: db.fn.now(),
  });
  return recordOrderEvent(db, order.id, 'purchase_order.acknowledged', {
    reference: input.reference ?? null,
    expectedDate: input.expectedDate ?? null,
    ...input.event,
  });
}

/**
 * Resolves an unresolved order: `acknowledge` takes the terms the operator learnt from the
 * supplier (accepted quantities at most as ordered, skus on the order only), `resend` puts it back
 * to `sent` for one more round of attempts under the same Idempotency-Key (the caller queues that
 * send after commit). Any other status: `invalid_transition`.
 */
export async function resolvePurchaseOrder(
  db: Knex,
  input: { purchaseOrderId: string; resolution: Resolution },
): Promise<PurchaseOrder> {
  const row = await lockPurchaseOrder(db, input.purchaseOrderId);
  const { resolution } = input;
  if (row.status !== 'unresolved') {
    throw new DomainError(
      'invalid_transition',
      `Purchase order ${poNumber(row.number)} is ${row.status}: only an unresolved order can be resolved`,
      { purchaseOrderId: row.id, currentStatus: row.status, allowed: purchaseOrderTransitions[row.status] },
    );
  }
  const order = (await getPurchaseOrder(db, row.id))!;
  if (resolution.action === 'resend') {
    await setStatus(db, row.id, 'sent', { failure: null, sent_at: db.fn.now() });
    return recordOrderEvent(db, row.id, 'purchase_order.sent', { resend: true });
  }
  const problems = acceptanceProblems(order.lines, resolution.lines ?? []);
  if (problems.length > 0) {
    throw new DomainError(
      'invalid_acceptance',
      `The accepted lines do not fit ${poNumber(row.number)}: ${problems.join('; ')}`,
      { purchaseOrderId: row.id, problems },
    );
  }
  return acknowledgePurchaseOrder(db, order, {
    reference: resolution.reference,
    expectedDate: resolution.expectedDate,
    lines: resolution.lines,
    answer: null,
    event: { resolvedBy: 'operator' },
  });
}

/** Cancels a draft, sent, unresolved or acknowledged order: its lines stop counting as incoming. */
export async function cancelPurchaseOrder(
  db: Knex,
  input: { purchaseOrderId: string; reason?: string },
): Promise<PurchaseOrder> {
  const row = await lockPurchaseOrder(db, input.purchaseOrderId);
  assertTransition(row, 'cancelled', 'cancelled');
  await setStatus(db, row.id, 'cancelled', {
    cancel_reason: input.reason ?? null,
    closed_at: db.fn.now(),
  });
  return recordOrderEvent(db, row.id, 'purchase_order.cancelled', { reason: input.reason ?? null });
}

/**
 * Receives goods: a `receipt` movement per line at the order's location, the lines' received
 * quantities (which lowers incoming), and the order's status: `received` once every line is
 * complete, else `partially_received`. More than a line still expects is refused, as is a sku
 * the order does not have.
 */
export async function receivePurchaseOrder(
  db: Knex,
  input: { purchaseOrderId: string; lines: { sku: string; quantity: number; unitCost?: number }[] },
): Promise<PurchaseOrder> {
  const row = await lockPurchaseOrder(db, input.purchaseOrderId);
  if (row.status !== 'acknowledged' && row.status !== 'partially_received') {
    assertTransition(row, 'partially_received', 'received');
  }
  const lines = (await db<LineRow>('purchase_order_lines')
    .where({ purchase_order_id: row.id })
    .forUpdate()) as LineRow[];
  const bySku = new Map(lines.map((l) => [l.sku, l]));
  const unknown = input.lines.filter((l) => !bySku.has(l.sku));
  if (unknown.length > 0) {
    throw new DomainError(
      'not_found',
      `Purchase order ${poNumber(row.number)} has no line for ${unknown.map((l) => l.sku).join(', ')}`,
      { purchaseOrderId: row.id, skus: unknown.map((l) => l.sku) },
    );
  }
  const over = input.lines.flatMap((line, index) => {
    const stored = bySku.get(line.sku)!;
    const ordered = stored.accepted_quantity ?? stored.quantity;
    const open = ordered - stored.received_quantity;
    return line.quantity > open
      ? [{ index, sku: line.sku, quantity: line.quantity, ordered, received: stored.received_quantity, open }]
      : [];
  });
  if (over.length > 0) {
    throw new DomainError(
      'over_receipt',
      `${over.length} line(s) receive more than the order still expects`,
      { purchaseOrderId: row.id, lines: over },
    );
  }
  await lockLevels(
    db,
    input.lines.map((l) => ({ sku: l.sku, location: row.location })),
  );
  const reference = poNumber(row.number);
  const movements = await insertMovements(
    db,
    input.lines.map((line) => ({
      kind: 'receipt' as const,
      sku: line.sku,
      location: row.location,
      delta: line.quantity,
      reason: 'received',
      reference,
      // Received at the line's cost (given now, or kept on the line before).
      unitCost: line.unitCost ?? bySku.get(line.sku)!.unit_cost,
    })),
  );
  for (const line of input.lines) {
    await db('purchase_order_lines')
      .where({ purchase_order_id: row.id, sku: line.sku })
      .update({
        received_quantity: db.raw('received_quantity + ?', [line.quantity]),
        ...(line.unitCost !== undefined ? { unit_cost: line.unitCost } : {}),
        updated_at: db.fn.now(),
      });
  }
  const complete = lines.every((stored) => {
    const received =
      stored.received_quantity + (input.lines.find((l) => l.sku === stored.sku)?.quantity ?? 0);
    return received >= (stored.accepted_quantity ?? stored.quantity);
  });
  const status = complete ? 'received' : 'partially_received';
  await setStatus(db, row.id, status, complete ? { closed_at: db.fn.now() } : {});
  return recordOrderEvent(
    db,
    row.id,
    complete ? 'purchase_order.received' : 'purchase_order.partially_received',
    {
      received: input.lines,
      movementIds: movements.map((m) => m.id),
    },
  );
}
