-- on_hand and reserved change only through the ledger (stockflow_apply_movement), incoming only through
-- purchase order lines (stockflow_apply_incoming): both run at trigger depth 2. Only reconcile's
-- transaction-local rebuild flag (stockflow.rebuild_levels) bypasses this.
-- Fired by: inventory_levels_guard (before insert or update on inventory_levels).
create or replace function stockflow_guard_level() returns trigger language plpgsql as $$
begin
  if pg_trigger_depth() < 2 and current_setting('stockflow.rebuild_levels', true) is distinct from 'on' then
    if tg_op = 'INSERT' and (new.on_hand <> 0 or new.reserved <> 0)
       or tg_op = 'UPDATE' and (new.on_hand <> old.on_hand or new.reserved <> old.reserved) then
      raise exception 'inventory_levels.on_hand and reserved change only through stock_movements'
        using errcode = 'restrict_violation';
    end if;
    if tg_op = 'INSERT' and new.incoming <> 0 or tg_op = 'UPDATE' and new.incoming <> old.incoming then
      raise exception 'inventory_levels.incoming changes only through purchase_order_lines'
        using errcode = 'restrict_violation';
    end if;
  end if;
  return new;
end $$;
