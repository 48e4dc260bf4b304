-- Queues every new ledger row for the report rollups (docs/reports.md), in the movement's transaction:
-- an insert per row into stock_rollup_pending, never an update of a hot row, so group commit keeps its
-- throughput. The compaction job folds and deletes them (src/reports/rollups.ts).
-- Fired by: stock_movements_rollup (after insert on stock_movements, once per statement, over its
-- transition table).
create or replace function stockflow_rollup_movements() returns trigger language plpgsql as $$
begin
  insert into stock_rollup_pending (movement_id, sku, location, kind, delta, unit_cost, job_id, created_at)
  select id, sku, location, kind, delta, unit_cost, job_id, created_at from new_movements;
  return null;
end $$;
