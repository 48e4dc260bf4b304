import type { Knex } from 'knex';

/**
 * Inventory: locations, stock levels per sku × location, the append-only stock ledger, and
 * reservations. The database does the guarding:
 * - CHECKs keep on_hand >= 0, reserved >= 0 and reserved <= on_hand;
 * - `stockflow_apply_movement` applies every ledger row to its level inside the inserting
 *   statement (and writes its `stock.moved` event), so ledger and levels cannot disagree;
 * - `stockflow_guard_level` refuses any change of on_hand/reserved that does not come from the
 *   ledger (only `scripts/reconcile --fix` may rebuild a level, by a transaction-local flag);
 * - the ledger refuses UPDATE, DELETE and TRUNCATE;
 * - initialization triggers give every product a zero level at every active location, and every
 *   new (or re-activated) location a zero level for every non-archived product.
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    create table locations (
      code text primary key constraint locations_code_format check (code ~ '^[A-Za-z0-9._-]{1,64}$'),
      name text not null constraint locations_name_length check (char_length(name) between 1 and 200),
      -- Allocation order: lower first, then code.
      priority integer not null default 100
        constraint locations_priority_range check (priority between 0 and 1000000),
      active boolean not null default true,
      version integer not null default 1,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create trigger locations_version_on_insert before insert on locations
      for each row execute function stockflow_version_on_insert();
    create trigger locations_version_on_update before update on locations
      for each row execute function stockflow_version_on_update();
    create trigger locations_audit after insert or update or delete on locations
      for each row execute function stockflow_audit('code');

    create table inventory_levels (
      sku text not null references products (sku),
      location text not null references locations (code),
      on_hand bigint not null default 0,
      reserved bigint not null default 0,
      safety_stock bigint not null default 0,
      -- Ordered but not yet received (purchase orders maintain it).
      incoming bigint not null default 0,
      version integer not null default 1,
      updated_at timestamptz not null default now(),
      primary key (sku, location),
      constraint inventory_levels_on_hand_non_negative check (on_hand >= 0),
      constraint inventory_levels_reserved_non_negative check (reserved >= 0),
      constraint inventory_levels_reserved_within_on_hand check (reserved <= on_hand),
      constraint inventory_levels_safety_stock_non_negative check (safety_stock >= 0),
      constraint inventory_levels_incoming_non_negative check (incoming >= 0)
    );
    create index inventory_levels_location on inventory_levels (location, sku);

    -- on_hand and reserved change only through the ledger (the apply trigger runs at depth 2).
    create function stockflow_guard_level() returns trigger language plpgsql as $$
    begin
      if pg_trigger_depth() < 2 and current_setting('stockflow.rebuild_levels', true) is distinct from 'on' then
        if tg_op = 'INSERT' and (new.on_hand <> 0 or new.reserved <> 0)
           or tg_op = 'UPDATE' and (new.on_hand <> old.on_hand or new.reserved <> old.reserved) then
          raise exception 'inventory_levels.on_hand and reserved change only through stock_movements'
            using errcode = 'restrict_violation';
        end if;
      end if;
      return new;
    end $$;
    create trigger inventory_levels_guard before insert or update on inventory_levels
      for each row execute function stockflow_guard_level();

    create function stockflow_init_levels_for_product() returns trigger language plpgsql as $$
    begin
      insert into inventory_levels (sku, location)
      select new.sku, code from locations where active
      on conflict do nothing;
      return null;
    end $$;
    create trigger products_init_levels after insert on products
      for each row execute function stockflow_init_levels_for_product();

    create function stockflow_init_levels_for_location() returns trigger language plpgsql as $$
    begin
      if new.active and (tg_op = 'INSERT' or not old.active) then
        insert into inventory_levels (sku, location)
        select sku, new.code from products where status <> 'archived'
        on conflict do nothing;
      end if;
      return null;
    end $$;
    create trigger locations_init_levels after insert or update of active on locations
      for each row execute function stockflow_init_levels_for_location();

    insert into locations (code, name, priority) values ('default', 'Default location', 100);

    create table reservations (
      id uuid primary key,
      reference text not null constraint reservations_reference_length check (char_length(reference) between 1 and 500),
      status text not null default 'active'
        constraint reservations_status_known check (status in ('active', 'committed', 'released', 'expired')),
      expires_at timestamptz not null,
      version integer not null default 1,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      closed_at timestamptz,
      constraint reservations_closed_when_not_active check ((status = 'active') = (closed_at is null))
    );
    create index reservations_expiring on reservations (expires_at) where status = 'active';
    create index reservations_reference on reservations (reference);
    create trigger reservations_version_on_insert before insert on reservations
      for each row execute function stockflow_version_on_insert();
    create trigger reservations_version_on_update before update on reservations
      for each row execute function stockflow_version_on_update();

    create table reservation_lines (
      reservation_id uuid not null references reservations (id),
      line_no integer not null,
      -- Index of the request line this allocation serves (a split line has several allocations).
      request_line integer not null,
      sku text not null,
      location text not null,
      quantity bigint not null constraint reservation_lines_quantity_positive check (quantity > 0),
      -- The allocation rule that chose the location.
      rule text not null
        constraint reservation_lines_rule_known check (rule in ('explicit', 'single_location', 'fewest_locations', 'split')),
      primary key (reservation_id, line_no),
      foreign key (sku, location) references inventory_levels (sku, location)
    );

    -- The ledger. Sign of delta by kind: the counter it moves is on_hand, except reserve/release
    -- (reserved) and commit (both: a sale out of reserved stock).
    create table stock_movements (
      id bigint generated always as identity primary key,
      kind text not null constraint stock_movements_kind_known check (kind in
        ('receipt', 'adjustment', 'sale', 'return', 'transfer_out', 'transfer_in', 'reserve', 'release', 'commit', 'count')),
      sku text not null,
      location text not null,
      delta bigint not null,
      on_hand_after bigint not null,
      reserved_after bigint not null,
      reason text constraint stock_movements_reason_known check (reason in
        ('received', 'returned', 'damaged', 'lost', 'found', 'correction', 'other', 'count', 'transfer',
         'reservation', 'released', 'expired', 'sale')),
      reference text constraint stock_movements_reference_length check (char_length(reference) <= 500),
      note text constraint stock_movements_note_length check (char_length(note) <= 2000),
      reservation_id uuid,
      actor text,
      job_id text,
      created_at timestamptz not null default now(),
      constraint stock_movements_delta_sign check (case kind
        when 'receipt' then delta > 0
        when 'return' then delta > 0
        when 'transfer_in' then delta > 0
        when 'reserve' then delta > 0
        when 'sale' then delta < 0
        when 'transfer_out' then delta < 0
        when 'release' then delta < 0
        when 'commit' then delta < 0
        when 'count' then true
        else delta <> 0 end)
    );
    create index stock_movements_sku on stock_movements (sku, id);

    -- Applies a ledger row to its level in the inserting statement, fills the after-values, actor
    -- and job id, and writes the row's event into the outbox. A level that does not exist yet
    -- (a location that was inactive when the product was created) is created; the foreign keys of
    -- inventory_levels refuse an unknown sku or location.
    create function stockflow_apply_movement() returns trigger language plpgsql as $$
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
    create trigger stock_movements_apply before insert on stock_movements
      for each row execute function stockflow_apply_movement();
    create trigger stock_movements_append_only before update or delete on stock_movements
      for each row execute function stockflow_forbid_change();
    create trigger stock_movements_no_truncate before truncate on stock_movements
      for each statement execute function stockflow_forbid_change();
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw(`
    drop table if exists stock_movements, reservation_lines, reservations, inventory_levels, locations;
    drop trigger if exists products_init_levels on products;
    drop function if exists stockflow_apply_movement, stockflow_init_levels_for_location,
      stockflow_init_levels_for_product, stockflow_guard_level;
  `);
}
