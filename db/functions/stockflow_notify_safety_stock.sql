-- A new safety stock moves the threshold and available at once: it can cross too.
-- Fired by: inventory_levels_safety_stock_state (after update of safety_stock on inventory_levels, when it
-- changed).
create or replace function stockflow_notify_safety_stock() returns trigger language plpgsql as $$
begin
  perform stockflow_notify_stock_state(
    new.sku, new.location,
    old.on_hand, old.reserved, old.safety_stock,
    new.on_hand, new.reserved, new.safety_stock, new.reorder_point,
    'safety_stock', null,
    nullif(current_setting('stockflow.job_id', true), ''),
    nullif(current_setting('stockflow.actor', true), ''));
  return null;
end $$;
