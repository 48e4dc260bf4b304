import type { Knex } from 'knex';
import { DomainError } from '../errors/domain-error.js';
import { appendEvents } from '../events/outbox.js';
import type { NewMovement } from '../schemas/inventory.js';
import type { OrderChange, ReturnInput } from '../schemas/orders.js';
import { lockLevels } from './inventory/lock.js';
import { assertKnown } from './inventory/planner.js';
import { insertMovements } from './ledger.js';
import { linesBySku, orderEvent, saveChange, updateLines } from './orders-changes.js';
import { type LockedOrder, lockOrder } from './orders-read.js';
import { assertTransition } from './orders-status.js';

interface Part {
  sku: string;
  quantity: number;
  location: string | null;
}

/**
 * Where restocked units go when the return names no location: back where the order's units were
 * committed from, location by location in commit order, less what earlier returns restocked there.
 */
async function restockParts(db: Knex, order: LockedOrder, wanted: ReturnInput['lines']): Promise<Part[]> {
  const { rows } = await db.raw<{ rows: { sku: string; location: string; room: number }[] }>(
    `with committed as (
       select sku, location, -sum(delta) as units, min(id) as first
       from stock_movements where reservation_id = ? and kind = 'commit' group by sku, location
     ), restocked as (
       select sku, location, sum(quantity) as units from order_returns
       where order_id = ? and restock group by sku, location
     )
     select c.sku, c.location, (c.units - coalesce(r.units, 0))::bigint as room
     from committed c left join restocked r on r.sku = c.sku and r.location = c.location
     order by c.first`,
    [order.reservation_id, order.id],
  );
  return wanted.flatMap((w) => {
    let left = w.quantity;
    const parts: Part[] = [];
    for (const row of rows.filter((r) => r.sku === w.sku)) {
      const take = Math.min(left, row.room);
      if (take > 0) parts.push({ sku: w.sku, quantity: take, location: row.location });
      left -= take;
    }
    return parts;
  });
}

/**
 * Records returned units of fulfilled lines; with `restock`, puts them back on hand through
 * `return` movements. More than a line's fulfilled − returned fails `return_exceeds_fulfilled`.
 */
export async function returnOrder(db: Knex, input: ReturnInput): Promise<OrderChange> {
  const order = await lockOrder(db, input.orderNumber);
  assertTransition(order.order_number, order.status, 'return');
  const lines = linesBySku(order, input.lines);
  const over = input.lines.flatMap((w, index) => {
    const returnable = lines[index]!.fulfilled - lines[index]!.returned;
    return w.quantity > returnable ? [{ index, sku: w.sku, requested: w.quantity, returnable }] : [];
  });
  if (over.length > 0) {
    throw new DomainError(
      'return_exceeds_fulfilled',
      `Order ${order.order_number}: ${over.length} line(s) return more than was fulfilled and not yet returned`,
      { orderNumber: order.order_number, lines: over },
    );
  }
  const parts: Part[] = !input.restock
    ? input.lines.map((l) => ({ ...l, location: null }))
    : input.location
      ? input.lines.map((l) => ({ ...l, location: input.location! }))
      : await restockParts(db, order, input.lines);
  const restocked = parts.filter((p): p is Part & { location: string } => p.location !== null);
  const locked = await lockLevels(db, restocked);
  assertKnown(restocked, locked.unknownSkus, locked.unknownLocations);
  const movements = await insertMovements(
    db,
    restocked.map(
      (p): NewMovement => ({
        kind: 'return',
        sku: p.sku,
        location: p.location,
        delta: p.quantity,
        reason: 'returned',
        reference: order.order_number,
        note: input.note ?? null,
      }),
    ),
  );
  await db('order_returns').insert(
    parts.map((p) => ({
      order_id: order.id,
      sku: p.sku,
      quantity: p.quantity,
      restock: input.restock,
      location: p.location,
      movement_id:
        p.location === null ? null : movements[restocked.indexOf(p as Part & { location: string })]!.id,
      note: input.note ?? null,
    })),
  );
  const changes = input.lines.map((w, index) => ({ lineNo: lines[index]!.line_no, quantity: w.quantity }));
  await updateLines(
    db,
    order.id,
    changes,
    input.restock
      ? 'returned = l.returned + t.quantity, restocked = l.restocked + t.quantity'
      : 'returned = l.returned + t.quantity',
  );
  const saved = await saveChange(db, order, 'return');
  await appendEvents(db, [
    orderEvent('order.returned', saved, {
      return: {
        restock: input.restock,
        lines: parts.map((p) => ({ sku: p.sku, quantity: p.quantity, location: p.location })),
        note: input.note ?? null,
      },
    }),
  ]);
  return { order: saved, movements };
}
