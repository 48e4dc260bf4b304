import type { Knex } from 'knex';

export interface PlantedMovement {
  sku: string;
  location: string;
  kind: 'receipt' | 'sale' | 'return' | 'adjustment' | 'transfer_out' | 'transfer_in' | 'count';
  delta: number;
  unitCost?: number | null;
  jobId?: string | null;
  createdAt: Date;
}

/** Products (price 1000 in `currency`) with a level at every active location, written directly. */
export async function plantProducts(db: Knex, skus: string[], currency = 'EUR'): Promise<void> {
  await db.raw(
    `insert into products (sku, name, price_amount, price_currency)
     select sku, sku, 1000, ? from unnest(?::text[]) as s (sku) on conflict do nothing`,
    [currency, skus],
  );
}

/**
 * Writes ledger rows with the instants given (history, backdated rows), in the order given (ids
 * follow it), as if applied: the apply trigger is off while they go in (it would stamp now()), the
 * rollup trigger stays on, and the levels are rebuilt from the ledger after. Every level must end
 * at 0 units or more.
 */
export async function plantMovements(db: Knex, movements: PlantedMovement[]): Promise<void> {
  if (movements.length === 0) return;
  await db.transaction(async (trx) => {
    await trx.raw('alter table stock_movements disable trigger stock_movements_apply');
    await trx.raw(
      `insert into stock_movements (kind, sku, location, delta, reason, unit_cost, job_id, created_at,
                                    on_hand_after, reserved_after)
       select kind, sku, location, delta,
              case kind when 'receipt' then 'received' when 'sale' then 'sale' when 'return' then 'returned'
                        when 'count' then 'count' when 'adjustment' then 'correction' else 'transfer' end,
              unit_cost, job_id, created_at, 0, 0
       from unnest(?::text[], ?::text[], ?::text[], ?::bigint[], ?::bigint[], ?::text[], ?::timestamptz[])
         with ordinality as m (kind, sku, location, delta, unit_cost, job_id, created_at, n)
       order by n`,
      [
        movements.map((m) => m.kind),
        movements.map((m) => m.sku),
        movements.map((m) => m.location),
        movements.map((m) => m.delta),
        movements.map((m) => m.unitCost ?? null),
        movements.map((m) => m.jobId ?? null),
        movements.map((m) => m.createdAt),
      ] as Knex.RawBinding[],
    );
    await trx.raw('alter table stock_movements enable trigger stock_movements_apply');
    await trx.raw(`select set_config('stockflow.rebuild_levels', 'on', true)`);
    await trx.raw(
      `update inventory_levels l set on_hand = s.on_hand, version = version + 1
       from (select sku, location, sum(delta)::bigint as on_hand from stock_movements
             where kind not in ('reserve', 'release') group by sku, location) s
       where l.sku = s.sku and l.location = s.location and l.on_hand <> s.on_hand`,
    );
    await trx.raw(`select set_config('stockflow.rebuild_levels', 'off', true)`);
  });
}
