import type { Knex } from 'knex';

/**
 * Weekly sales for `abc`: `stock_sales_weekly` holds per sku and week (from Monday, UTC) the net
 * units sold (sale and commit out, less returns in) over every location, written by compaction only,
 * so a window reads its whole weeks here and only the days at its edges from `stock_daily`. Filled
 * here from the daily rollups.
 *
 * Day snapshots for `?at=` (docs/reports.md, "How they stay fast"): `stock_value_days` holds each
 * level's average-cost state at the end of every UTC day it moved on, written by compaction only
 * (never by a movement's transaction), so `?at=` replays only the part of the day of `at` before it,
 * from each moved level's latest day snapshot before that day.
 *
 * `stock_value_days_from` is the first day from which they are complete. On a database with folded
 * states they cannot be rebuilt here without replaying the whole ledger, so each level's current
 * state is recorded on the day of its last folded movement and the snapshots count from the day
 * after the latest one (`?at=` before it replays from the month snapshots, as before); a database
 * with nothing folded yet has them complete from the start.
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    create table stock_value_days (
      sku text not null,
      location text not null,
      -- The UTC day whose end this state is.
      day date not null,
      units bigint not null,
      value double precision not null,
      last_cost double precision,
      last_at timestamptz not null,
      last_id bigint not null,
      primary key (sku, location, day)
    );

    create table stock_value_days_from (
      only_row boolean primary key default true check (only_row),
      day date not null
    );

    insert into stock_value_days (sku, location, day, units, value, last_cost, last_at, last_id)
    select sku, location, (last_at at time zone 'UTC')::date, units, value, last_cost, last_at, last_id
    from stock_value_state;

    create table stock_sales_weekly (
      week date not null,
      sku text not null,
      net bigint not null,
      primary key (week, sku) include (net)
    );

    insert into stock_sales_weekly (week, sku, net)
    select date_trunc('week', day)::date, sku,
           sum(case kind when 'return' then -units_in else units_out end)
    from stock_daily where kind in ('sale', 'commit', 'return') group by 1, 2;

    insert into stock_value_days_from (day)
    select coalesce((max(last_at) at time zone 'UTC')::date + 1, '-infinity'::date) from stock_value_state;
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw(`drop table if exists stock_sales_weekly, stock_value_days_from, stock_value_days`);
}
