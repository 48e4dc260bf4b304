import type { Knex } from 'knex';

/**
 * Stock notifications, written by the database in the transaction of the change that crossed:
 * - a level's stock state is `out` (available = 0), `low` (0 < available <= threshold) or
 *   `in_stock` (available > threshold), where available = on_hand - reserved - safety_stock (at
 *   least 0, as the API shows it) and the threshold is `stockflow_stock_threshold` (today: the
 *   level's safety stock);
 * - every change of state writes one event naming the state entered: `inventory.low_stock`,
 *   `inventory.out_of_stock`, `inventory.back_in_stock`. A movement that leaves the state as it was
 *   writes none, so a burst of movements inside one state is silent.
 * The level row is locked by the update that changes it, so concurrent movements on one level
 * see each other's results and each crossing is written exactly once.
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    -- THE threshold of a level's low-stock state: the one place it is chosen.
    create function stockflow_stock_threshold(p_sku text, p_location text, p_safety_stock bigint)
      returns bigint language sql stable as $$
      select p_safety_stock
    $$;

    create function stockflow_stock_state(p_available bigint, p_threshold bigint)
      returns text language sql immutable as $$
      select case when p_available <= 0 then 'out' when p_available <= p_threshold then 'low' else 'in_stock' end
    $$;

    -- Writes the notification of a level whose figures went from (old_*) to (new_*), if its state changed.
    create function stockflow_notify_stock_state(
      p_sku text, p_location text,
      old_on_hand bigint, old_reserved bigint, old_safety bigint,
      new_on_hand bigint, new_reserved bigint, new_safety bigint,
      p_cause text, p_movement_id bigint, p_job_id text, p_actor text
    ) returns void language plpgsql as $$
    declare
      old_available bigint := greatest(0, old_on_hand - old_reserved - old_safety);
      new_available bigint := greatest(0, new_on_hand - new_reserved - new_safety);
      old_threshold bigint := stockflow_stock_threshold(p_sku, p_location, old_safety);
      new_threshold bigint := case when new_safety = old_safety then old_threshold
                                   else stockflow_stock_threshold(p_sku, p_location, new_safety) end;
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

    -- As in 20261126000200_inventory, plus the stock notification of the level it moved.
    create or replace function stockflow_apply_movement() returns trigger language plpgsql as $$
    declare
      on_hand_delta bigint := 0;
      reserved_delta bigint := 0;
      level_safety bigint;
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
        returning on_hand, reserved, safety_stock into new.on_hand_after, new.reserved_after, level_safety;
      if not found then
        insert into inventory_levels (sku, location, on_hand, reserved)
        values (new.sku, new.location, on_hand_delta, reserved_delta)
        returning on_hand, reserved, safety_stock into new.on_hand_after, new.reserved_after, level_safety;
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
        new.on_hand_after, new.reserved_after, level_safety,
        'movement', new.id, new.job_id, new.actor);
      return new;
    end $$;

    -- A new safety stock moves the threshold and available at once: it can cross too.
    create function stockflow_notify_safety_stock() returns trigger language plpgsql as $$
    begin
      perform stockflow_notify_stock_state(
        new.sku, new.location,
        old.on_hand, old.reserved, old.safety_stock,
        new.on_hand, new.reserved, new.safety_stock,
        'safety_stock', null,
        nullif(current_setting('stockflow.job_id', true), ''),
        nullif(current_setting('stockflow.actor', true), ''));
      return null;
    end $$;
    create trigger inventory_levels_safety_stock_state after update of safety_stock on inventory_levels
      for each row when (old.safety_stock is distinct from new.safety_stock)
      execute function stockflow_notify_safety_stock();
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw(`
    drop trigger if exists inventory_levels_safety_stock_state on inventory_levels;
    drop function if exists stockflow_notify_safety_stock;
    create or replace function stockflow_apply_movement() returns trigger language plpgsql as $$
    declare
      on_hand_delta bigint := 0;
      reserved_delta bigint := 0;
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
        returning on_hand, reserved into new.on_hand_after, new.reserved_after;
      if not found then
        insert into inventory_levels (sku, location, on_hand, reserved)
        values (new.sku, new.location, on_hand_delta, reserved_delta)
        returning on_hand, reserved into new.on_hand_after, new.reserved_after;
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
      return new;
    end $$;
    drop function if exists stockflow_notify_stock_state, stockflow_stock_state, stockflow_stock_threshold;
  `);
}
