import type { Knex } from 'knex';
import { loadFunctions } from '../../src/db/sql-functions.js';

/**
 * The low-stock threshold is stored on the level: `inventory_levels.reorder_point` is the point of
 * the level's reorder rule (its fixed point, or the last point the planner computed for an automatic
 * rule; null without a rule or before an automatic rule's first check), written by the reordering
 * domain in the transaction that sets or computes it. The stock triggers then read the level alone
 * instead of the reordering tables; the threshold (`stockflow_stock_threshold`) is unchanged: the
 * reorder point when there is one, else the safety stock.
 *
 * A rule set by a release older than this one while it deploys reaches the level at its next check.
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    alter table inventory_levels add column reorder_point bigint
      constraint inventory_levels_reorder_point_non_negative check (reorder_point >= 0);
    -- As stockflow_stock_threshold chose it until now.
    update inventory_levels l set reorder_point = coalesce(r.reorder_point, c.reorder_point)
      from reorder_rules r left join reorder_rule_checks c on c.rule_id = r.id
      where l.sku = r.sku and l.location = r.location and coalesce(r.reorder_point, c.reorder_point) is not null;
    drop function stockflow_stock_threshold(text, text, bigint);
    drop function stockflow_notify_stock_state(text, text, bigint, bigint, bigint, bigint, bigint, bigint, text,
      bigint, text, text);
  `);
  await loadFunctions(db, [
    'stockflow_stock_threshold',
    'stockflow_notify_stock_state',
    'stockflow_apply_movement',
    'stockflow_notify_safety_stock',
  ]);
}

export async function down(db: Knex): Promise<void> {
  await db.raw(`
    drop function stockflow_stock_threshold(bigint, bigint);
    drop function stockflow_notify_stock_state(text, text, bigint, bigint, bigint, bigint, bigint, bigint, bigint,
      text, bigint, text, text);
    create function stockflow_stock_threshold(p_sku text, p_location text, p_safety_stock bigint)
      returns bigint language sql stable as $$
      select coalesce(
        (select coalesce(r.reorder_point, c.reorder_point)
           from reorder_rules r left join reorder_rule_checks c on c.rule_id = r.id
          where r.sku = p_sku and r.location = p_location),
        p_safety_stock)
    $$;
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
    create or replace function stockflow_notify_safety_stock() returns trigger language plpgsql as $$
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
    alter table inventory_levels drop column reorder_point;
  `);
}
