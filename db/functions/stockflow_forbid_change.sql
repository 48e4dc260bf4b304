-- For logs that must never be rewritten (audit trail, stock ledger, histories).
-- Fired by: audit_log_append_only, stock_movements_append_only, stock_movements_no_truncate,
-- image_versions_append_only, order_lines_append_only, order_history_append_only, order_returns_append_only.
create or replace function stockflow_forbid_change() returns trigger language plpgsql as $$
begin
  raise exception '% is append-only: % is not allowed', tg_table_name, tg_op
    using errcode = 'restrict_violation';
end $$;
