import type { Knex } from 'knex';
import { DomainError } from '../errors/domain-error.js';
import { cursors } from '../schemas/fields.js';
import type { Order, OrderDetail, OrderStatus } from '../schemas/orders.js';
import { toMovement } from './ledger.js';
import { getReservation } from './reservations.js';

export interface OrderRow {
  id: number;
  order_number: string;
  status: OrderStatus;
  currency: string;
  ship_to_country: string | null;
  ship_to_postal_code: string | null;
  reservation_id: string;
  version: number;
  created_at: Date;
  updated_at: Date;
  confirmed_at: Date | null;
  cancelled_at: Date | null;
  expired_at: Date | null;
}

export interface OrderLineRow {
  order_id: number;
  line_no: number;
  sku: string;
  unit_price: number;
  ordered: number;
  open_reserved: number;
  fulfilled: number;
  cancelled: number;
  returned: number;
  restocked: number;
}

/** An order row locked for its job, with its lines, and whether its reservation is past its expiry. */
export type LockedOrder = OrderRow & { lines: OrderLineRow[]; due: boolean };

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export const toOrder = (row: OrderRow, lines: OrderLineRow[]): Order => ({
  orderNumber: row.order_number,
  status: row.status,
  currency: row.currency,
  shipTo: row.ship_to_country ? { country: row.ship_to_country, postalCode: row.ship_to_postal_code } : null,
  reservationId: row.reservation_id,
  version: row.version,
  createdAt: row.created_at.toISOString(),
  updatedAt: row.updated_at.toISOString(),
  confirmedAt: iso(row.confirmed_at),
  cancelledAt: iso(row.cancelled_at),
  expiredAt: iso(row.expired_at),
  lines: [...lines]
    .sort((a, b) => a.line_no - b.line_no)
    .map((l) => ({
      line: l.line_no,
      sku: l.sku,
      unitPrice: l.unit_price,
      ordered: l.ordered,
      openReserved: l.open_reserved,
      fulfilled: l.fulfilled,
      cancelled: l.cancelled,
      returned: l.returned,
      restocked: l.restocked,
    })),
});

/**
 * Locks an order for the rest of the transaction: the first lock of every order job (then its
 * reservation, then the levels), so two jobs on one order queue behind each other.
 */
export async function lockOrder(db: Knex, orderNumber: string): Promise<LockedOrder> {
  const { rows } = await db.raw<{ rows: (OrderRow & { due: boolean })[] }>(
    `select o.*, coalesce(r.status = 'active' and r.expires_at <= now(), false) as due
     from orders o join reservations r on r.id = o.reservation_id
     where o.order_number = ? for update of o`,
    [orderNumber],
  );
  const row = rows[0];
  if (!row) throw new DomainError('not_found', `Order ${orderNumber} does not exist`, { orderNumber });
  const lines = await db<OrderLineRow>('order_lines').where({ order_id: row.id }).orderBy('line_no');
  return { ...row, lines };
}

/** The orders with these ids, as the API shows them, in id order. */
export async function readOrders(db: Knex, ids: number[]): Promise<Order[]> {
  if (ids.length === 0) return [];
  const rows = await db<OrderRow>('orders').whereIn('id', ids).orderBy('id');
  const lines = await db<OrderLineRow>('order_lines').whereIn('order_id', ids);
  return rows.map((row) =>
    toOrder(
      row,
      lines.filter((l) => l.order_id === row.id),
    ),
  );
}

export async function getOrder(db: Knex, orderNumber: string): Promise<OrderDetail | undefined> {
  const row = await db<OrderRow>('orders').where({ order_number: orderNumber }).first();
  if (!row) return undefined;
  const [order] = await readOrders(db, [row.id]);
  const [reservation, movements, returns, history] = await Promise.all([
    getReservation(db, row.reservation_id),
    db.raw(
      `select m.* from stock_movements m where m.reservation_id = ?
       union all
       select m.* from stock_movements m join order_returns r on r.movement_id = m.id where r.order_id = ?
       order by id`,
      [row.reservation_id, row.id],
    ),
    db('order_returns').where({ order_id: row.id }).orderBy('id'),
    db('order_history').where({ order_id: row.id }).orderBy('id'),
  ]);
  return {
    ...order!,
    reservation: reservation!,
    movements: movements.rows.map(toMovement),
    returns: returns.map((r) => ({
      id: r.id,
      sku: r.sku,
      quantity: r.quantity,
      restock: r.restock,
      location: r.location,
      movementId: r.movement_id,
      note: r.note,
      actor: r.actor,
      jobId: r.job_id,
      at: r.at.toISOString(),
    })),
    history: history.map((h) => ({
      action: h.action,
      fromStatus: h.from_status,
      toStatus: h.to_status,
      version: h.version,
      actor: h.actor,
      jobId: h.job_id,
      at: h.at.toISOString(),
    })),
  };
}

export interface OrderListQuery {
  status?: OrderStatus;
  /** Orders created at or after this instant. */
  since?: string;
  /** The last order id of the page before (decoded by `cursors.order`). */
  cursor?: number;
  limit: number;
}

/** Orders oldest first, keyset-paginated on their id (the cursor is opaque to callers). */
export async function listOrders(
  db: Knex,
  query: OrderListQuery,
): Promise<{ items: Order[]; nextCursor: string | null }> {
  const builder = db<OrderRow>('orders')
    .orderBy('id')
    .limit(query.limit + 1)
    .select('id');
  if (query.status) builder.where('status', query.status);
  if (query.since) builder.where('created_at', '>=', query.since);
  if (query.cursor !== undefined) builder.where('id', '>', query.cursor);
  const ids = ((await builder) as { id: number }[]).map((r) => r.id);
  const page = ids.slice(0, query.limit);
  const more = ids.length > query.limit;
  return {
    items: await readOrders(db, page),
    nextCursor: more ? cursors.order.encode(page[page.length - 1]!) : null,
  };
}
