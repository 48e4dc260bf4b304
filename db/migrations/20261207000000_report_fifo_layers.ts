import type { Knex } from 'knex';
import { loadFunctions } from '../../src/db/sql-functions.js';

/**
 * The `ageing` report without reading every level's inflows (docs/reports.md, "How they stay fast"):
 * - `stock_fifo_layers`: for each level, the newest inflows (per UTC day) that cover the units it
 *   holds as folded (`stock_value_state.units`): first in first out, what is on hand is always the
 *   newest inflows. Written by compaction for the levels it folds;
 * - `stock_fifo_days`: the same layers summed over every level per currency and day, units and value
 *   (units × the level's average cost; numeric, so what compaction adds and later takes back cancels
 *   exactly), so the report's totals read a few hundred rows;
 * - `stock_fifo_currency`: the currency each sku's layers are counted under there; a product whose
 *   currency changes waits in `stock_fifo_recount` (trigger `products_fifo_recount`): the report
 *   corrects it when read, the next compaction moves it.
 * - an index in (sku, location) order with the "C" collation the reports page by, on
 *   `stock_value_state`, so a page of levels is an index range, not a sort of every level.
 * Filled here from the ledger rows already folded.
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    create table stock_fifo_layers (
      sku text not null,
      location text not null,
      day date not null,
      -- 0 units: nothing left, the newest consumed day (a later inflow older than it was backdated).
      units bigint not null constraint stock_fifo_layers_units_non_negative check (units >= 0),
      primary key (sku, location, day)
    );
    create table stock_fifo_days (
      currency text not null,
      day date not null,
      units bigint not null,
      value numeric not null,
      primary key (currency, day)
    );
    create table stock_fifo_currency (
      sku text primary key,
      currency text not null
    );
    create table stock_fifo_recount (sku text primary key);
    create index stock_value_state_page on stock_value_state (sku collate "C", location collate "C");

    insert into stock_fifo_layers (sku, location, day, units)
    select sku, location, day, least(units, held - (covered - units)) from (
      select i.sku, i.location, i.day, i.units, s.units as held,
             sum(i.units) over (partition by i.sku, i.location order by i.day desc) as covered
      from (
        select sku, location, (created_at at time zone 'UTC')::date as day, sum(delta)::bigint as units
        from stock_movements m
        where delta > 0 and kind not in ('reserve', 'release')
          and not exists (select 1 from stock_rollup_pending p where p.movement_id = m.id)
        group by 1, 2, 3
      ) i join stock_value_state s on s.sku = i.sku and s.location = i.location
      where s.units > 0
    ) x where covered - units < held;
    insert into stock_fifo_layers (sku, location, day, units)
    select m.sku, m.location, max((m.created_at at time zone 'UTC')::date), 0
    from stock_movements m join stock_value_state s on s.sku = m.sku and s.location = m.location
    where s.units <= 0 and m.delta > 0 and m.kind not in ('reserve', 'release')
      and not exists (select 1 from stock_rollup_pending p where p.movement_id = m.id)
    group by 1, 2;

    insert into stock_fifo_currency (sku, currency)
    select distinct l.sku, p.price_currency from stock_fifo_layers l join products p on p.sku = l.sku;

    insert into stock_fifo_days (currency, day, units, value)
    select c.currency, l.day, sum(l.units), sum((l.units * (s.value / s.units))::numeric)
    from stock_fifo_layers l join stock_value_state s on s.sku = l.sku and s.location = l.location
    join stock_fifo_currency c on c.sku = l.sku
    where l.units > 0
    group by 1, 2;
  `);
  await loadFunctions(db, ['stockflow_fifo_recount']);
  await db.raw(`
    create trigger products_fifo_recount after update of price_currency on products
      for each row when (old.price_currency is distinct from new.price_currency)
      execute function stockflow_fifo_recount();
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw(`
    drop index if exists stock_value_state_page;
    drop trigger if exists products_fifo_recount on products;
    drop function if exists stockflow_fifo_recount;
    drop table if exists stock_fifo_recount, stock_fifo_currency, stock_fifo_days, stock_fifo_layers;
  `);
}
