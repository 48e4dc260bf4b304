import type { Knex } from 'knex';

/**
 * The `stock-valuation` totals without reading every level (docs/reports.md, "How they stay fast"):
 * - `stock_value_totals`: units and value of the folded states (`stock_value_state`) summed per
 *   currency and location. Written by compaction only (one run at a time, never by a movement's
 *   transaction): the old part of the levels it folds taken out, the new one added, in numeric so
 *   they cancel exactly (src/reports/stock-valuation.ts, writeValueTotals).
 * - every sku with a folded state gets its row in `stock_fifo_currency` (the currency it is counted
 *   under), so a product changing currency is corrected by the report and moved by compaction as
 *   the ageing sums are (`stock_fifo_recount`).
 * - indexes in the order the reports page by ("C" collation, the order JavaScript compares text in),
 *   so a page is an index range that stops at its limit instead of a sort of every row:
 *   `inventory_levels` (sku, location) for `low-stock` (sku and location never change, so the
 *   movements' updates of a level stay HOT), `products` by sku for `sell-through` and by (currency,
 *   sku) for `abc`;
 * - `stock_daily` by (kind, day), covering, so the sales of a window (`abc`, `sell-through`) are read
 *   without the other kinds' rows (written by compaction only: no cost to a movement).
 * Filled here from the states already folded.
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    create table stock_value_totals (
      currency text not null,
      location text not null,
      units bigint not null,
      value numeric not null,
      primary key (currency, location)
    );

    insert into stock_fifo_currency (sku, currency)
    select distinct s.sku, p.price_currency from stock_value_state s join products p on p.sku = s.sku
    on conflict (sku) do nothing;

    insert into stock_value_totals (currency, location, units, value)
    select c.currency, s.location, sum(s.units), sum(s.value::numeric)
    from stock_value_state s join stock_fifo_currency c on c.sku = s.sku
    group by 1, 2;

    create index inventory_levels_page on inventory_levels (sku collate "C", location collate "C");
    create index products_page on products (sku collate "C");
    create index products_currency_page on products (price_currency collate "C", sku collate "C");
    create index stock_daily_kind_day on stock_daily (kind, day) include (sku, location, units_in, units_out);
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw(`
    drop index if exists inventory_levels_page, products_page, products_currency_page, stock_daily_kind_day;
    drop table if exists stock_value_totals;
  `);
}
