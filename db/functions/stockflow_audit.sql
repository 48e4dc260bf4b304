-- Audit trail: one row per insert/update/delete with before/after images. tg_argv[0] names the key
-- column. The actor and job id come from the transaction-local settings a job sets (set_config(..., true)).
-- Fired by: products_audit, locations_audit, images_audit, orders_audit (after insert, update or delete).
create or replace function stockflow_audit() returns trigger language plpgsql as $$
declare
  key_column text := tg_argv[0];
begin
  insert into audit_log (table_name, row_key, op, before, after, actor, job_id)
  values (
    tg_table_name,
    case when tg_op = 'DELETE' then to_jsonb(old) ->> key_column else to_jsonb(new) ->> key_column end,
    tg_op,
    case when tg_op <> 'INSERT' then to_jsonb(old) end,
    case when tg_op <> 'DELETE' then to_jsonb(new) end,
    nullif(current_setting('stockflow.actor', true), ''),
    nullif(current_setting('stockflow.job_id', true), '')
  );
  return null;
end $$;
