import type { Knex } from 'knex';
import { DomainError } from '../errors/domain-error.js';
import type { EventType } from '../schemas/event-types.js';
import type { Movement } from '../schemas/inventory.js';
import type { Order, OrderAction } from '../schemas/orders.js';
import { toMovement } from './ledger.js';
import { type LockedOrder, type OrderLineRow, type OrderRow, readOrders } from './orders-read.js';
import { assertLanded } from './orders-status.js';

export const orderEvent = (type: EventType, order: Order, extra: Record<string, unknown> = {}) => ({
  type,
  aggregate: { type: 'order', id: order.orderNumber },
  data: { order, ...extra },
});

/** The ledger rows the current job wrote for this reservation (the job id is transaction-local). */
export async function movementsOfJob(db: Knex, reservationId: string): Promise<Movement[]> {
  const { rows } = await db.raw(
    `select * from stock_movements
     where reservation_id = ? and job_id = nullif(current_setting('stockflow.job_id', true), '')
     order by id`,
    [reservationId],
  );
  return rows.map(toMovement);
}

/**
 * Writes the order row after its lines changed (with `flags`): the database derives the new
 * status and version. Checks the status landed where the transition table allows, and records
 * the change in the order's history.
 */
export async function saveChange(
  db: Knex,
  order: LockedOrder,
  action: OrderAction,
  flags: Partial<Record<'confirmed_at' | 'cancelled_at', Knex.Raw>> = {},
): Promise<Order> {
  const [row] = (await db('orders')
    .where({ id: order.id })
    .update({ ...flags, updated_at: db.fn.now() })
    .returning('*')) as OrderRow[];
  assertLanded(order.order_number, order.status, action, row!.status);
  await db('order_history').insert({
    order_id: order.id,
    action,
    from_status: order.status,
    to_status: row!.status,
    version: row!.version,
  });
  const [saved] = await readOrders(db, [order.id]);
  return saved!;
}

/** Moves quantities between the columns of some lines in one statement. */
export async function updateLines(
  db: Knex,
  orderId: number,
  changes: { lineNo: number; quantity: number }[],
  set: string,
): Promise<void> {
  if (changes.length === 0) return;
  await db.raw(
    `update order_lines l set ${set}
     from unnest(?::int[], ?::bigint[]) as t (line_no, quantity)
     where l.order_id = ? and l.line_no = t.line_no`,
    [changes.map((c) => c.lineNo), changes.map((c) => c.quantity), orderId],
  );
}

/** Fails `not_found` listing every requested sku the order does not have. */
export function linesBySku(order: LockedOrder, requested: { sku: string }[]): OrderLineRow[] {
  const bySku = new Map(order.lines.map((l) => [l.sku, l]));
  const missing = requested.flatMap((r, index) => (bySku.has(r.sku) ? [] : [{ index, sku: r.sku }]));
  if (missing.length > 0) {
    throw new DomainError(
      'not_found',
      `Order ${order.order_number} has no line for ${missing.length} sku(s)`,
      {
        orderNumber: order.order_number,
        lines: missing,
      },
    );
  }
  return requested.map((r) => bySku.get(r.sku)!);
}
