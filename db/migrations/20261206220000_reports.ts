import type { Knex } from 'knex';
import { loadFunctions } from '../../src/db/sql-functions.js';

/**
 * Reports (docs/reports.md) read the ledger through rollups kept with it:
 * - `stock_movements.unit_cost`: what a received unit cost (minor units of the product's currency);
 *   null when the movement carries none (it then takes the current average, src/reports/valuation.ts);
 *   `purchase_order_lines.unit_cost`: the cost a line's units are received at;
 * - `stock_rollup_pending`: every new ledger row, copied by a statement-level AFTER INSERT trigger in
 *   the movement's own transaction. Insert-only (no hot row is updated, so group commit keeps its
 *   throughput); the compaction job (src/reports/rollups.ts) deletes what it folds, in its transaction;
 * - `stock_daily` (sku × location × day × kind) and `stock_daily_totals` (location × day × kind):
 *   units in and out, value in and out, movements; written by compaction only;
 * - `stock_value_state`: each level's moving-average state after the last movement folded in, and
 *   `stock_value_snapshots`: the state at the end of each month the level moved in (period
 *   snapshots, so `?at=` replays at most one month of the ledger); once a month is over,
 *   `stock_value_month_ends` holds every level's state at its end (dense: one row per level, so `?at=`
 *   reads one index range), and `stock_value_periods` the months closed;
 * - `job_runs`: every finished job attempt, written by the worker processor (the `jobs` report).
 * Existing movements are queued for compaction here, so rollups cover the whole ledger.
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    alter table stock_movements add column unit_cost bigint
      constraint stock_movements_unit_cost_non_negative check (unit_cost >= 0);
    alter table purchase_order_lines add column unit_cost bigint
      constraint purchase_order_lines_unit_cost_non_negative check (unit_cost >= 0);
    -- Bounded time ranges of the ledger (hour buckets, the month an ?at= replays) read this index.
    create index stock_movements_created on stock_movements (created_at);

    create table stock_rollup_pending (
      movement_id bigint not null,
      sku text not null,
      location text not null,
      kind text not null,
      delta bigint not null,
      unit_cost bigint,
      job_id text,
      created_at timestamptz not null
    );

    create table stock_daily (
      sku text not null,
      location text not null,
      day date not null,
      kind text not null,
      units_in bigint not null default 0,
      units_out bigint not null default 0,
      value_in double precision not null default 0,
      value_out double precision not null default 0,
      movements integer not null default 0,
      primary key (sku, location, day, kind)
    );
    create index stock_daily_day on stock_daily (day, location, kind);

    create table stock_daily_totals (
      location text not null,
      day date not null,
      kind text not null,
      units_in bigint not null default 0,
      units_out bigint not null default 0,
      value_in double precision not null default 0,
      value_out double precision not null default 0,
      movements integer not null default 0,
      primary key (day, location, kind)
    );

    create table stock_value_state (
      sku text not null,
      location text not null,
      units bigint not null,
      value double precision not null,
      last_cost double precision,
      last_at timestamptz not null,
      last_id bigint not null,
      primary key (sku, location)
    );

    create table stock_value_snapshots (
      sku text not null,
      location text not null,
      -- The first day of the month whose end this state is.
      period date not null,
      units bigint not null,
      value double precision not null,
      last_cost double precision,
      last_at timestamptz not null,
      last_id bigint not null,
      primary key (sku, location, period)
    );


    create table stock_value_month_ends (
      period date not null,
      sku text not null,
      location text not null,
      units bigint not null,
      value double precision not null,
      last_cost double precision,
      last_at timestamptz not null,
      last_id bigint not null,
      primary key (period, sku, location)
    );
    create table stock_value_periods (
      period date primary key,
      closed_at timestamptz not null default now()
    );
  `);
  await loadFunctions(db, ['stockflow_rollup_movements']);
  await db.raw(`
    create trigger stock_movements_rollup after insert on stock_movements
      referencing new table as new_movements
      for each statement execute function stockflow_rollup_movements();

    insert into stock_rollup_pending (movement_id, sku, location, kind, delta, unit_cost, job_id, created_at)
    select id, sku, location, kind, delta, unit_cost, job_id, created_at from stock_movements;

    create table job_runs (
      id bigint generated always as identity primary key,
      queue text not null,
      name text not null,
      job_id text,
      attempt integer not null,
      outcome text not null constraint job_runs_outcome_known check (outcome in ('completed', 'failed', 'retried')),
      error_code text,
      wait_ms integer,
      run_ms integer not null,
      finished_at timestamptz not null
    );
    create index job_runs_finished on job_runs (finished_at);

    -- Bounded windows of the other reports.
    create index reservations_created on reservations (created_at);
    create index reservations_closed on reservations (closed_at) where closed_at is not null;
    create index order_history_at on order_history (at);
    create index webhook_deliveries_created on webhook_deliveries (created_at);
    create index webhook_attempts_started on webhook_attempts (started_at);
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw(`
    drop index if exists reservations_created, reservations_closed, order_history_at,
      webhook_deliveries_created, webhook_attempts_started;
    drop table if exists job_runs, stock_value_periods, stock_value_month_ends, stock_value_snapshots, stock_value_state, stock_daily_totals, stock_daily,
      stock_rollup_pending;
    drop trigger if exists stock_movements_rollup on stock_movements;
    drop function if exists stockflow_rollup_movements;
    drop index if exists stock_movements_created;
    alter table stock_movements drop column if exists unit_cost;
    alter table purchase_order_lines drop column if exists unit_cost;
  `);
}
