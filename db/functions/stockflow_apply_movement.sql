-- Applies a ledger row to its level in the inserting statement (so ledger and levels cannot disagree),
-- fills the after-values, actor and job id, writes the row's stock.moved event and, when the level's
-- stock state changed, its notification. A level that does not exist yet (its location was inactive
-- when the product was created) is created; the foreign keys of inventory_levels refuse an unknown sku
-- or location.
-- Fired by: stock_movements_apply (before insert on stock_movements).
create or replace function stockflow_apply_movement() returns trigger language plpgsql as $$
declare
  on_hand_delta bigint := 0;
  reserved_delta bigint := 0;
  level_safety bigint;
  level_reorder_point bigint;
begin
  if new.kind in ('reserve', 'release') then
    reserved_delta := new.delta;
  elsif new.kind = 'commit' then
    on_hand_delta := new.delta;
    reserved_delta := new.delta;
  else
    on_hand_delta := new.delta;
  end if;
  update inventory_levels
    set on_hand = on_hand + on_hand_delta, reserved = reserved + reserved_delta,
        version = version + 1, updated_at = now()
    where sku = new.sku and location = new.location
    returning on_hand, reserved, safety_stock, reorder_point
      into new.on_hand_after, new.reserved_after, level_safety, level_reorder_point;
  if not found then
    insert into inventory_levels (sku, location, on_hand, reserved)
    values (new.sku, new.location, on_hand_delta, reserved_delta)
    returning on_hand, reserved, safety_stock, reorder_point
      into new.on_hand_after, new.reserved_after, level_safety, level_reorder_point;
  end if;
  new.actor := coalesce(new.actor, nullif(current_setting('stockflow.actor', true), ''));
  new.job_id := coalesce(new.job_id, nullif(current_setting('stockflow.job_id', true), ''));
  new.created_at := now();
  insert into events (type, aggregate_type, aggregate_id, data, job_id, actor)
  values ('stock.moved', 'inventory', new.sku, jsonb_build_object(
      'movementId', new.id, 'kind', new.kind, 'sku', new.sku, 'location', new.location,
      'delta', new.delta, 'onHandAfter', new.on_hand_after, 'reservedAfter', new.reserved_after,
      'reason', new.reason, 'reference', new.reference, 'reservationId', new.reservation_id),
    new.job_id, new.actor);
  perform stockflow_notify_stock_state(
    new.sku, new.location,
    new.on_hand_after - on_hand_delta, new.reserved_after - reserved_delta, level_safety,
    new.on_hand_after, new.reserved_after, level_safety, level_reorder_point,
    'movement', new.id, new.job_id, new.actor);
  return new;
end $$;
