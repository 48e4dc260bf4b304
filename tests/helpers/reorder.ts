import { expect } from 'vitest';
import { json, type TestContext } from './context.js';
import { until as waitUntil } from './until.js';

/** Calls of the reorder tests, through the API (Prefer: wait, so each returns the job's outcome). */
export function reorderApi(ctx: TestContext) {
  const wait = { prefer: 'wait=20' };
  const call = async (
    method: 'POST' | 'PUT',
    url: string,
    payload: Record<string, unknown>,
    status = 200,
    key?: string,
  ) => {
    const res = await ctx.request({ method, url, headers: wait, payload, key });
    expect(res.statusCode, res.body).toBe(status);
    return json(res);
  };
  return {
    call,
    async product(sku: string, stock = 0) {
      await call(
        'POST',
        '/api/pms/products',
        { sku, name: sku, price: { amount: 100, currency: 'EUR' } },
        201,
      );
      if (stock > 0) await this.adjust(sku, stock, 'received');
    },
    adjust: (sku: string, delta: number, reason = delta > 0 ? 'received' : 'damaged') =>
      call('POST', '/api/pms/inventory/adjust', { movements: [{ sku, location: 'default', delta, reason }] }),
    /** A sale: reserve and commit (the ledger's `commit` kind, as orders write it). */
    async sell(sku: string, quantity: number) {
      const reservation = await call(
        'POST',
        '/api/pms/inventory/reservations',
        { reference: `sale-${sku}-${quantity}`, lines: [{ sku, quantity, location: 'default' }] },
        201,
      );
      return call('POST', `/api/pms/inventory/reservations/${reservation.id}/commit`, {});
    },
    /** Registers a supplier, with the admin key: its credentials are the shop's, not the PMS's. */
    supplier: (body: Record<string, unknown>) =>
      call(
        'POST',
        '/api/pms/suppliers',
        { name: 'Supplier', leadTimeDays: 3, apiKey: 'supplier-key-123', ...body },
        201,
        ctx.adminKey,
      ),
    rule: (body: Record<string, unknown>) =>
      call('PUT', '/api/pms/inventory/reorder-rules', { location: 'default', ...body }),
    async purchaseOrder(id: string) {
      const res = await ctx.request({ method: 'GET', url: `/api/pms/purchase-orders/${id}` });
      expect(res.statusCode, res.body).toBe(200);
      return json(res);
    },
    level: (sku: string) =>
      ctx.api
        .db('inventory_levels')
        .where({ sku, location: 'default' })
        .first('on_hand', 'reserved', 'incoming'),
    lines: (sku: string) => ctx.api.db('purchase_order_lines').where({ sku }).orderBy('created_at'),
    /**
     * Waits until the planner's scan has read every movement so far. A test whose supplier fails
     * or rejects the first order calls it before setting the rule: otherwise a scan of the stock
     * set-up movement, landing after the failure, orders again (correctly, but not on cue).
     */
    scanned: () =>
      until(async () => {
        const { rows } = await ctx.api.db.raw(
          `select (select position from outbox_cursors where name = 'reorder') >=
                  coalesce((select max(seq) from events where type = 'stock.moved'), 0) as done`,
        );
        return rows[0].done === true;
      }),
  };
}

/** Polls `probe` until it returns something truthy (a loaded machine stretches every wait: generous bound). */
export async function until<T>(
  probe: () => Promise<T | undefined | null | false>,
  timeoutMs = 20_000,
): Promise<T> {
  return (await waitUntil('condition', probe, Boolean, timeoutMs, 50)) as T;
}

/** incoming = what open purchase order lines still expect, at every level. */
export async function expectIncomingMatchesLines(ctx: TestContext): Promise<void> {
  const { rows } = await ctx.api.db.raw(
    `select l.sku, l.location, l.incoming, coalesce(sum(p.outstanding), 0)::bigint as lines
     from inventory_levels l left join purchase_order_lines p on p.sku = l.sku and p.location = l.location
     group by l.sku, l.location, l.incoming having l.incoming <> coalesce(sum(p.outstanding), 0)`,
  );
  expect(rows).toEqual([]);
}
