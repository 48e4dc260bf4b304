import type { Knex } from 'knex';

/**
 * Orders, and what reservations need to serve them:
 * - a reservation line may be committed or released in parts (`committed`, `released`; what it
 *   still holds is `quantity - committed - released`), so an order can be fulfilled in parts;
 * - a reservation may hold without expiry (`expires_at` null: a confirmed order);
 * - a reservation may have an `owner` ('order'): it then changes only through its order.
 *
 * Order quantities are the source of truth. Per line, `ordered = open_reserved + fulfilled +
 * cancelled` and `returned <= fulfilled` are CHECKs. The order's status is never written by
 * code: `stockflow_order_status` computes it from the lines and the confirmed / cancelled /
 * expired flags, a BEFORE trigger stores it on every write of the order, and a deferred
 * constraint trigger refuses to commit any transaction that leaves an order's stored status
 * different from what its lines say (a line changed without its order).
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    alter table reservation_lines
      add column committed bigint not null default 0,
      add column released bigint not null default 0,
      add constraint reservation_lines_parts_within_quantity
        check (committed >= 0 and released >= 0 and committed + released <= quantity);
    -- An order reads its reserve, commit and release rows by reservation.
    create index stock_movements_reservation on stock_movements (reservation_id) where reservation_id is not null;
    alter table reservations
      alter column expires_at drop not null,
      add column owner text constraint reservations_owner_known check (owner in ('order'));

    create table orders (
      id bigint generated always as identity primary key,
      order_number text not null unique
        constraint orders_number_length check (char_length(order_number) between 1 and 64),
      currency char(3) not null constraint orders_currency_format check (currency ~ '^[A-Z]{3}$'),
      ship_to_country char(2) constraint orders_ship_to_country_format check (ship_to_country ~ '^[A-Z]{2}$'),
      ship_to_postal_code text
        constraint orders_ship_to_postal_code_length check (char_length(ship_to_postal_code) between 1 and 32),
      -- Written only by orders_status (below), from the lines and the three flags.
      status text not null default 'reserved' constraint orders_status_known check (status in
        ('reserved', 'confirmed', 'partially_fulfilled', 'fulfilled', 'cancelled', 'expired')),
      confirmed_at timestamptz,
      cancelled_at timestamptz,
      expired_at timestamptz,
      reservation_id uuid not null unique references reservations (id),
      version integer not null default 1,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      constraint orders_closed_once check (cancelled_at is null or expired_at is null),
      constraint orders_expired_unconfirmed check (expired_at is null or confirmed_at is null)
    );
    create index orders_created on orders (created_at, id);
    create index orders_status on orders (status, id);
    create trigger orders_version_on_insert before insert on orders
      for each row execute function stockflow_version_on_insert();
    create trigger orders_version_on_update before update on orders
      for each row execute function stockflow_version_on_update();
    create trigger orders_audit after insert or update or delete on orders
      for each row execute function stockflow_audit('order_number');

    create table order_lines (
      order_id bigint not null references orders (id),
      -- Index of the line in the request (and of the reservation's request line).
      line_no integer not null,
      sku text not null references products (sku),
      -- Minor unit of the order's currency.
      unit_price bigint not null constraint order_lines_unit_price_non_negative check (unit_price >= 0),
      ordered bigint not null constraint order_lines_ordered_positive check (ordered > 0),
      open_reserved bigint not null constraint order_lines_open_non_negative check (open_reserved >= 0),
      fulfilled bigint not null default 0 constraint order_lines_fulfilled_non_negative check (fulfilled >= 0),
      -- Units that will never be fulfilled: released by a cancel or by the reservation's expiry.
      cancelled bigint not null default 0 constraint order_lines_cancelled_non_negative check (cancelled >= 0),
      returned bigint not null default 0 constraint order_lines_returned_non_negative check (returned >= 0),
      restocked bigint not null default 0,
      primary key (order_id, line_no),
      constraint order_lines_sku_once unique (order_id, sku),
      constraint order_lines_quantities_add_up check (ordered = open_reserved + fulfilled + cancelled),
      constraint order_lines_returned_within_fulfilled check (returned <= fulfilled),
      constraint order_lines_restocked_within_returned check (restocked >= 0 and restocked <= returned)
    );

    -- The one definition of an order's status.
    create function stockflow_order_status(
      confirmed boolean, cancelled boolean, expired boolean, open_units bigint, fulfilled_units bigint
    ) returns text language sql immutable as $$
      select case
        when expired then 'expired'
        when cancelled then 'cancelled'
        when fulfilled_units > 0 and open_units = 0 then 'fulfilled'
        when fulfilled_units > 0 then 'partially_fulfilled'
        when confirmed then 'confirmed'
        else 'reserved'
      end
    $$;

    -- The status an order's lines and flags say it has, and whether they are consistent at all.
    create function stockflow_order_state(o orders, out status text, out problem text)
    language plpgsql stable as $$
    declare
      open_units bigint;
      fulfilled_units bigint;
      cancelled_units bigint;
    begin
      select coalesce(sum(l.open_reserved), 0), coalesce(sum(l.fulfilled), 0), coalesce(sum(l.cancelled), 0)
        into open_units, fulfilled_units, cancelled_units
        from order_lines l where l.order_id = o.id;
      status := stockflow_order_status(o.confirmed_at is not null, o.cancelled_at is not null,
        o.expired_at is not null, open_units, fulfilled_units);
      problem := case
        when o.expired_at is not null and (open_units > 0 or fulfilled_units > 0)
          then 'an expired order holds or fulfilled units'
        when o.cancelled_at is not null and open_units > 0 then 'a cancelled order still holds units'
        when o.cancelled_at is null and o.expired_at is null and cancelled_units > 0
          then 'an open order has cancelled units'
        when fulfilled_units > 0 and o.confirmed_at is null then 'an unconfirmed order has fulfilled units'
      end;
    end $$;

    create function stockflow_order_set_status() returns trigger language plpgsql as $$
    begin
      new.status := (stockflow_order_state(new)).status;
      return new;
    end $$;
    create trigger orders_status before insert or update on orders
      for each row execute function stockflow_order_set_status();

    create function stockflow_order_check() returns trigger language plpgsql as $$
    declare
      o orders;
      state record;
    begin
      -- tg_argv[0]: the column of the changed row that holds the order id.
      select * into o from orders where id = (to_jsonb(new) ->> tg_argv[0])::bigint;
      state := stockflow_order_state(o);
      if state.problem is not null then
        raise exception 'order %: %', o.order_number, state.problem using errcode = 'check_violation';
      end if;
      if o.status is distinct from state.status then
        raise exception 'order % is stored as % but its lines say %', o.order_number, o.status, state.status
          using errcode = 'check_violation';
      end if;
      return null;
    end $$;
    create constraint trigger orders_status_matches_lines after insert or update on orders
      deferrable initially deferred for each row execute function stockflow_order_check('id');
    create constraint trigger order_lines_status_matches after insert or update on order_lines
      deferrable initially deferred for each row execute function stockflow_order_check('order_id');
    create trigger order_lines_append_only before delete on order_lines
      for each row execute function stockflow_forbid_change();

    -- Every change of an order, with who made it and in which job.
    create table order_history (
      id bigint generated always as identity primary key,
      order_id bigint not null references orders (id),
      action text not null
        constraint order_history_action_known check (action in ('create', 'confirm', 'fulfill', 'cancel', 'return', 'expire')),
      from_status text,
      to_status text not null,
      version integer not null,
      actor text default nullif(current_setting('stockflow.actor', true), ''),
      job_id text default nullif(current_setting('stockflow.job_id', true), ''),
      at timestamptz not null default now()
    );
    create index order_history_order on order_history (order_id, id);
    create trigger order_history_append_only before update or delete on order_history
      for each row execute function stockflow_forbid_change();

    -- Returned units, restocked (with their return movement) or not.
    create table order_returns (
      id bigint generated always as identity primary key,
      order_id bigint not null references orders (id),
      sku text not null,
      quantity bigint not null constraint order_returns_quantity_positive check (quantity > 0),
      restock boolean not null,
      location text,
      movement_id bigint,
      note text constraint order_returns_note_length check (char_length(note) <= 2000),
      actor text default nullif(current_setting('stockflow.actor', true), ''),
      job_id text default nullif(current_setting('stockflow.job_id', true), ''),
      at timestamptz not null default now(),
      constraint order_returns_restock_has_location check (restock = (location is not null))
    );
    create index order_returns_order on order_returns (order_id, id);
    create trigger order_returns_append_only before update or delete on order_returns
      for each row execute function stockflow_forbid_change();

    -- Inbound PMS webhooks: one row per applied webhook-id, written in the transaction of its effect.
    create table inbound_deliveries (
      webhook_id text primary key constraint inbound_deliveries_id_length check (char_length(webhook_id) between 1 and 255),
      job_id text not null,
      type text not null,
      -- The event's own timestamp (body.timestamp).
      occurred_at timestamptz not null,
      applied boolean not null,
      outcome jsonb not null,
      applied_at timestamptz not null default now()
    );
    create index inbound_deliveries_applied_at on inbound_deliveries (applied_at);

    -- The last PMS version applied per product: older or equal versions are not applied.
    create table inbound_product_versions (
      sku text primary key,
      pms_version bigint not null constraint inbound_product_versions_positive check (pms_version > 0),
      webhook_id text not null,
      applied_at timestamptz not null default now()
    );
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw(`
    drop table if exists inbound_product_versions, inbound_deliveries, order_returns, order_history,
      order_lines, orders;
    drop function if exists stockflow_order_check, stockflow_order_set_status, stockflow_order_state,
      stockflow_order_status;
    drop index if exists stock_movements_reservation;
    alter table reservations drop column if exists owner;
    alter table reservation_lines drop constraint if exists reservation_lines_parts_within_quantity,
      drop column if exists committed, drop column if exists released;
  `);
}
