import type { Knex } from 'knex';
import { isPgError, pgErrorCodes } from '../db/knex.js';
import { DomainError } from '../errors/domain-error.js';
import { appendEvents } from '../events/outbox.js';
import type { CreateOrderInput, OrderChange } from '../schemas/orders.js';
import { createReservation } from './inventory/reserve.js';
import { linesBySku, movementsOfJob, orderEvent, saveChange, updateLines } from './orders-changes.js';
import { lockOrder, type OrderLineRow, type OrderRow, readOrders } from './orders-read.js';
import { assertLanded, assertTransition } from './orders-status.js';
import {
  commitReservationPart,
  expireReservations,
  extendReservation,
  releaseReservation,
} from './reservations.js';

/**
 * Creates the order and reserves every line in one reservation owned by the order (allocation
 * rules of the inventory), or nothing: a shortage fails `insufficient_stock` with every short line.
 */
export async function createOrder(db: Knex, input: CreateOrderInput): Promise<OrderChange> {
  const taken = () =>
    new DomainError('order_number_taken', `Order ${input.orderNumber} already exists`, {
      orderNumber: input.orderNumber,
    });
  if (await db('orders').where({ order_number: input.orderNumber }).first('id')) throw taken();
  const reservation = await createReservation(db, {
    reference: input.orderNumber,
    lines: input.lines.map((l) => ({ sku: l.sku, quantity: l.quantity })),
    ttlSeconds: input.holdSeconds,
    owner: 'order',
  });
  let row: OrderRow;
  try {
    [row] = (await db('orders')
      .insert({
        order_number: input.orderNumber,
        currency: input.currency,
        ship_to_country: input.shipTo?.country ?? null,
        ship_to_postal_code: input.shipTo?.postalCode ?? null,
        reservation_id: reservation.id,
      })
      .returning('*')) as [OrderRow];
  } catch (error) {
    if (isPgError(error, pgErrorCodes.uniqueViolation, 'orders_order_number_key')) throw taken();
    throw error;
  }
  await db('order_lines').insert(
    input.lines.map(
      (l, index): Omit<OrderLineRow, 'fulfilled' | 'cancelled' | 'returned' | 'restocked'> => ({
        order_id: row.id,
        line_no: index,
        sku: l.sku,
        unit_price: l.unitPrice,
        ordered: l.quantity,
        open_reserved: l.quantity,
      }),
    ),
  );
  await db('order_history').insert({ order_id: row.id, action: 'create', to_status: row.status, version: 1 });
  const [order] = await readOrders(db, [row.id]);
  await appendEvents(db, [orderEvent('order.created', order!)]);
  return { order: order!, movements: await movementsOfJob(db, reservation.id) };
}

/** Paid: the reservation no longer expires. A reservation already past its expiry counts as expired. */
export async function confirmOrder(db: Knex, input: { orderNumber: string }): Promise<OrderChange> {
  const order = await lockOrder(db, input.orderNumber);
  assertTransition(order.order_number, order.due ? 'expired' : order.status, 'confirm');
  await extendReservation(db, { reservationId: order.reservation_id, owner: 'order', ttlSeconds: null });
  const saved = await saveChange(db, order, 'confirm', { confirmed_at: db.raw('now()') });
  await appendEvents(db, [orderEvent('order.confirmed', saved)]);
  return { order: saved, movements: [] };
}

/** Releases what is still reserved; fulfilled units stay sold (they can come back as returns). */
export async function cancelOrder(db: Knex, input: { orderNumber: string }): Promise<OrderChange> {
  const order = await lockOrder(db, input.orderNumber);
  assertTransition(order.order_number, order.status, 'cancel');
  await releaseReservation(db, { reservationId: order.reservation_id, owner: 'order' });
  await updateLines(
    db,
    order.id,
    order.lines.map((l) => ({ lineNo: l.line_no, quantity: l.open_reserved })),
    'cancelled = l.cancelled + t.quantity, open_reserved = l.open_reserved - t.quantity',
  );
  const saved = await saveChange(db, order, 'cancel', { cancelled_at: db.raw('now()') });
  await appendEvents(db, [orderEvent('order.cancelled', saved)]);
  return { order: saved, movements: await movementsOfJob(db, order.reservation_id) };
}

/**
 * Fulfils the given quantities (default: everything still reserved): commits that part of the
 * reservation as `commit` rows at the locations the allocation chose. Asking for more than a line
 * still holds fails `insufficient_reserved` with every such line; nothing is fulfilled then.
 */
export async function fulfillOrder(
  db: Knex,
  input: { orderNumber: string; lines?: { sku: string; quantity: number }[] },
): Promise<OrderChange> {
  const order = await lockOrder(db, input.orderNumber);
  assertTransition(order.order_number, order.status, 'fulfill');
  const wanted =
    input.lines ??
    order.lines.filter((l) => l.open_reserved > 0).map((l) => ({ sku: l.sku, quantity: l.open_reserved }));
  const lines = linesBySku(order, wanted);
  const short = wanted.flatMap((w, index) =>
    w.quantity > lines[index]!.open_reserved
      ? [{ index, sku: w.sku, requested: w.quantity, openReserved: lines[index]!.open_reserved }]
      : [],
  );
  if (short.length > 0) {
    throw new DomainError(
      'insufficient_reserved',
      `Order ${order.order_number}: ${short.length} line(s) ask for more than is still reserved`,
      { orderNumber: order.order_number, currentStatus: order.status, lines: short },
    );
  }
  const changes = wanted.map((w, index) => ({ lineNo: lines[index]!.line_no, quantity: w.quantity }));
  const { movements } = await commitReservationPart(db, {
    reservationId: order.reservation_id,
    owner: 'order',
    lines: changes.map((c) => ({ line: c.lineNo, quantity: c.quantity })),
  });
  await updateLines(
    db,
    order.id,
    changes,
    'fulfilled = l.fulfilled + t.quantity, open_reserved = l.open_reserved - t.quantity',
  );
  const saved = await saveChange(db, order, 'fulfill');
  const type = saved.status === 'fulfilled' ? 'order.fulfilled' : 'order.partially_fulfilled';
  await appendEvents(db, [
    orderEvent(type, saved, {
      fulfilment: {
        lines: wanted,
        movements: movements.map((m) => ({ id: m.id, sku: m.sku, location: m.location, quantity: -m.delta })),
      },
    }),
  ]);
  return { order: saved, movements };
}

/**
 * Expires up to `limit` reserved orders whose reservation is past its expiry: the reservation is
 * expired (its stock released) and the order moves to `expired` in the same transaction. Orders
 * locked by a running job are skipped (SKIP LOCKED): the next run sees them. Returns their
 * reservation ids.
 */
export async function expireDueOrders(db: Knex, input: { limit: number }): Promise<string[]> {
  const { rows } = await db.raw<{ rows: OrderRow[] }>(
    `select o.* from orders o join reservations r on r.id = o.reservation_id
     where o.status = 'reserved' and r.status = 'active' and r.expires_at <= now()
     order by r.expires_at, o.id
     limit ?
     for update of o skip locked`,
    [input.limit],
  );
  if (rows.length === 0) return [];
  const { reservationIds } = await expireReservations(db, {
    limit: rows.length,
    owner: 'order',
    reservationIds: rows.map((r) => r.reservation_id),
  });
  const expiring = rows.filter((r) => reservationIds.includes(r.reservation_id)).map((r) => r.id);
  if (expiring.length === 0) return [];
  await db.raw(
    `update order_lines set cancelled = cancelled + open_reserved, open_reserved = 0 where order_id = any(?::bigint[])`,
    [expiring],
  );
  const updated = (await db('orders')
    .whereIn('id', expiring)
    .update({ expired_at: db.fn.now() })
    .returning('*')) as OrderRow[];
  for (const row of updated) assertLanded(row.order_number, 'reserved', 'expire', row.status);
  await db('order_history').insert(
    updated.map((row) => ({
      order_id: row.id,
      action: 'expire',
      from_status: 'reserved',
      to_status: row.status,
      version: row.version,
    })),
  );
  const orders = await readOrders(db, expiring);
  await appendEvents(
    db,
    orders.map((o) => orderEvent('order.expired', o)),
  );
  return reservationIds;
}

/**
 * The reservation expiry, orders first: an order's reservation expires with the order (locked
 * first, the lock order of every order job); then the reservations nobody owns.
 */
export async function expireDue(db: Knex, input: { limit: number }) {
  const ofOrders = await expireDueOrders(db, input);
  const others = await expireReservations(db, input);
  return {
    expired: ofOrders.length + others.expired,
    reservationIds: [...ofOrders, ...others.reservationIds],
  };
}
