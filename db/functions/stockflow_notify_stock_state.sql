-- Writes the notification of a level whose figures went from (old_*) to (new_*), if its stock state
-- changed: inventory.out_of_stock, inventory.low_stock or inventory.back_in_stock, in the transaction of
-- the change. The caller has the level row locked, so each crossing is written exactly once. Both
-- states are judged against the level's current reorder point (p_reorder_point).
create or replace function stockflow_notify_stock_state(
  p_sku text, p_location text,
  old_on_hand bigint, old_reserved bigint, old_safety bigint,
  new_on_hand bigint, new_reserved bigint, new_safety bigint, p_reorder_point bigint,
  p_cause text, p_movement_id bigint, p_job_id text, p_actor text
) returns void language plpgsql as $$
declare
  old_available bigint := greatest(0, old_on_hand - old_reserved - old_safety);
  new_available bigint := greatest(0, new_on_hand - new_reserved - new_safety);
  old_threshold bigint := stockflow_stock_threshold(p_reorder_point, old_safety);
  new_threshold bigint := stockflow_stock_threshold(p_reorder_point, new_safety);
  old_state text := stockflow_stock_state(old_available, old_threshold);
  new_state text := stockflow_stock_state(new_available, new_threshold);
begin
  if old_state = new_state then
    return;
  end if;
  insert into events (type, aggregate_type, aggregate_id, data, job_id, actor)
  values (
    case new_state when 'out' then 'inventory.out_of_stock'
                   when 'low' then 'inventory.low_stock'
                   else 'inventory.back_in_stock' end,
    'inventory', p_sku,
    jsonb_build_object(
      'sku', p_sku, 'location', p_location, 'state', new_state, 'previousState', old_state,
      'available', new_available, 'previousAvailable', old_available, 'threshold', new_threshold,
      'onHand', new_on_hand, 'reserved', new_reserved, 'safetyStock', new_safety,
      'cause', p_cause, 'movementId', p_movement_id),
    p_job_id, p_actor);
end $$;
