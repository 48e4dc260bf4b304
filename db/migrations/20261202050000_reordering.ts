import type { Knex } from 'knex';

/**
 * Automatic reordering: suppliers, reorder rules, purchase orders with their lines and every send
 * attempt. The database holds the rules that must never break:
 * - a rule has at most one line on a draft purchase order (unique partial index), so re-running
 *   the planner updates that line and never adds a second one;
 * - a line's `po_status` always equals its order's status (a cascading foreign key), and its
 *   `outstanding` (what it still adds to the level's `incoming`) is computed from it;
 * - `inventory_levels.incoming` changes only through purchase order lines (trigger
 *   `stockflow_apply_incoming`; the level guard now refuses any other change of it);
 * - a purchase order's status moves only along the transitions below (trigger);
 * - nothing is received beyond the quantity the order stands at.
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    create table suppliers (
      code text primary key
        constraint suppliers_code_format check (code ~ '^[A-Za-z0-9._-]{1,64}$' and code not in ('.', '..')),
      name text not null constraint suppliers_name_length check (char_length(name) between 1 and 200),
      api_url text not null
        constraint suppliers_api_url_http check (api_url ~ '^(http|https)://' and char_length(api_url) <= 2000),
      -- Sealed with AES-256-GCM under SECRETS_KEY (src/secrets.ts); never returned by the API.
      api_key text not null,
      lead_time_days integer not null constraint suppliers_lead_time_range check (lead_time_days between 1 and 365),
      min_order_quantity bigint not null default 1
        constraint suppliers_min_order_quantity_range check (min_order_quantity between 1 and 1000000000),
      order_multiple bigint not null default 1
        constraint suppliers_order_multiple_range check (order_multiple between 1 and 1000000000),
      active boolean not null default true,
      version integer not null default 1,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create trigger suppliers_version_on_insert before insert on suppliers
      for each row execute function stockflow_version_on_insert();
    create trigger suppliers_version_on_update before update on suppliers
      for each row execute function stockflow_version_on_update();

    create table reorder_rules (
      id bigint generated always as identity primary key,
      sku text not null,
      location text not null,
      supplier_code text not null references suppliers (code),
      -- fixed: reorder_point as given; auto: computed from demand at service_level.
      point_mode text not null constraint reorder_rules_point_mode_known check (point_mode in ('fixed', 'auto')),
      reorder_point bigint constraint reorder_rules_reorder_point_non_negative check (reorder_point >= 0),
      service_level numeric(6, 5)
        constraint reorder_rules_service_level_range check (service_level >= 0.5 and service_level <= 0.9999),
      window_days integer not null constraint reorder_rules_window_range check (window_days between 1 and 365),
      reorder_quantity bigint constraint reorder_rules_reorder_quantity_positive check (reorder_quantity > 0),
      max_level bigint constraint reorder_rules_max_level_positive check (max_level > 0),
      version integer not null default 1,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      constraint reorder_rules_one_per_level unique (sku, location),
      foreign key (sku, location) references inventory_levels (sku, location),
      constraint reorder_rules_point_given check ((point_mode = 'fixed') = (reorder_point is not null)),
      constraint reorder_rules_service_level_given check ((point_mode = 'auto') = (service_level is not null)),
      constraint reorder_rules_one_quantity_basis check ((reorder_quantity is null) <> (max_level is null))
    );
    create index reorder_rules_supplier on reorder_rules (supplier_code);
    create trigger reorder_rules_version_on_insert before insert on reorder_rules
      for each row execute function stockflow_version_on_insert();
    create trigger reorder_rules_version_on_update before update on reorder_rules
      for each row execute function stockflow_version_on_update();

    -- What the planner's last check of a rule found, and why it did not order (kept apart from the
    -- rule so a check does not bump the rule's version).
    create table reorder_rule_checks (
      rule_id bigint primary key references reorder_rules (id),
      checked_at timestamptz not null default now(),
      job_id text,
      outcome text not null constraint reorder_rule_checks_outcome_known check (outcome in
        ('ordered', 'updated', 'unchanged', 'above_point', 'skipped')),
      skip_reason text,
      reorder_point bigint not null,
      position bigint not null,
      purchase_order_id uuid
    );

    create table purchase_orders (
      id uuid primary key default gen_random_uuid(),
      -- Shown as PO-000001.
      number bigint generated always as identity unique,
      supplier_code text not null references suppliers (code),
      location text not null references locations (code),
      status text not null default 'draft' constraint purchase_orders_status_known check (status in
        ('draft', 'sent', 'acknowledged', 'rejected', 'failed', 'partially_received', 'received', 'cancelled')),
      supplier_reference text constraint purchase_orders_reference_length check (char_length(supplier_reference) <= 200),
      expected_date date,
      -- The supplier's answer as it came (JSON), and why a send failed for good.
      answer jsonb,
      failure jsonb,
      cancel_reason text constraint purchase_orders_cancel_reason_length check (char_length(cancel_reason) <= 500),
      sent_at timestamptz,
      acknowledged_at timestamptz,
      closed_at timestamptz,
      version integer not null default 1,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      -- Target of the lines' cascading foreign key that keeps their po_status equal to status.
      constraint purchase_orders_id_status_location unique (id, status, location)
    );
    create unique index purchase_orders_one_draft on purchase_orders (supplier_code, location) where status = 'draft';
    create index purchase_orders_status on purchase_orders (status, number);
    create trigger purchase_orders_version_on_insert before insert on purchase_orders
      for each row execute function stockflow_version_on_insert();
    create trigger purchase_orders_version_on_update before update on purchase_orders
      for each row execute function stockflow_version_on_update();

    -- The transitions of src/domain/purchase-orders.ts (purchaseOrderTransitions), as the last line of defence.
    create function stockflow_purchase_order_transition() returns trigger language plpgsql as $$
    begin
      if new.status is distinct from old.status and not (
           old.status = 'draft' and new.status in ('sent', 'cancelled')
        or old.status = 'sent' and new.status in ('acknowledged', 'rejected', 'failed', 'cancelled')
        or old.status = 'acknowledged' and new.status in ('partially_received', 'received', 'cancelled')
        or old.status = 'partially_received' and new.status = 'received') then
        raise exception 'purchase order % cannot go from % to %', old.id, old.status, new.status
          using errcode = 'check_violation';
      end if;
      return new;
    end $$;
    create trigger purchase_orders_transition before update of status on purchase_orders
      for each row execute function stockflow_purchase_order_transition();

    create table purchase_order_lines (
      purchase_order_id uuid not null,
      -- Always the order's status (cascading foreign key): the partial unique index below needs it here.
      po_status text not null,
      sku text not null,
      location text not null,
      rule_id bigint not null references reorder_rules (id),
      quantity bigint not null constraint purchase_order_lines_quantity_positive check (quantity > 0),
      -- What the supplier accepted (null until it answers; then the quantity the order stands at).
      accepted_quantity bigint constraint purchase_order_lines_accepted_non_negative check (accepted_quantity >= 0),
      received_quantity bigint not null default 0
        constraint purchase_order_lines_received_non_negative check (received_quantity >= 0),
      -- The planner's computation, term by term: quantity = ceil(max(raw, min_order) / multiple) * multiple,
      -- raw = reorder_quantity, or max_level - (available + incoming) where incoming excludes this line.
      basis text not null constraint purchase_order_lines_basis_known check (basis in ('reorder_quantity', 'max_level')),
      reorder_point bigint not null,
      available bigint not null,
      incoming bigint not null,
      reorder_quantity bigint,
      max_level bigint,
      raw_quantity bigint not null,
      min_order_quantity bigint not null,
      order_multiple bigint not null,
      -- What this line still adds to inventory_levels.incoming.
      outstanding bigint generated always as (
        case when po_status in ('draft', 'sent', 'acknowledged', 'partially_received')
             then greatest(coalesce(accepted_quantity, quantity) - received_quantity, 0) else 0 end) stored,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      primary key (purchase_order_id, sku),
      foreign key (purchase_order_id, po_status, location) references purchase_orders (id, status, location)
        on update cascade,
      foreign key (sku, location) references inventory_levels (sku, location),
      constraint purchase_order_lines_no_over_receipt check (received_quantity <= coalesce(accepted_quantity, quantity))
    );
    create unique index purchase_order_lines_one_draft_per_rule on purchase_order_lines (rule_id) where po_status = 'draft';
    create index purchase_order_lines_level on purchase_order_lines (sku, location) where outstanding > 0;

    -- Applies a line's change of outstanding to its level's incoming (the guard lets it through at depth 2).
    create function stockflow_apply_incoming() returns trigger language plpgsql as $$
    declare
      change bigint;
      k_sku text;
      k_location text;
    begin
      if tg_op = 'INSERT' then
        change := new.outstanding; k_sku := new.sku; k_location := new.location;
      elsif tg_op = 'DELETE' then
        change := -old.outstanding; k_sku := old.sku; k_location := old.location;
      else
        change := new.outstanding - old.outstanding; k_sku := new.sku; k_location := new.location;
      end if;
      if change <> 0 then
        update inventory_levels set incoming = incoming + change, version = version + 1, updated_at = now()
        where sku = k_sku and location = k_location;
      end if;
      return null;
    end $$;
    create trigger purchase_order_lines_incoming after insert or update or delete on purchase_order_lines
      for each row execute function stockflow_apply_incoming();

    create table purchase_order_attempts (
      id bigint generated always as identity primary key,
      purchase_order_id uuid not null references purchase_orders (id),
      attempt integer not null,
      job_id text,
      started_at timestamptz not null,
      duration_ms integer not null,
      status_code integer,
      outcome text not null constraint purchase_order_attempts_outcome_known check (outcome in
        ('acknowledged', 'rejected', 'retry', 'failed', 'refused')),
      error text,
      response_excerpt text,
      retry_after_ms integer,
      constraint purchase_order_attempts_once unique (purchase_order_id, attempt)
    );

    -- Demand for the auto reorder point: sales and commits of one level over a window.
    create index stock_movements_demand on stock_movements (sku, location, created_at) where kind in ('sale', 'commit');

    -- The planner reads stock.moved events after its own cursor (from now on: no backlog to plan).
    insert into outbox_cursors (name, position) select 'reorder', coalesce(max(seq), 0) from events;

    -- on_hand and reserved change only through the ledger, incoming only through purchase order lines
    -- (both apply triggers run at depth 2); only reconcile's rebuild flag bypasses this.
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
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw(`
    create or replace function stockflow_guard_level() returns trigger language plpgsql as $$
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
    delete from outbox_cursors where name = 'reorder';
    drop index if exists stock_movements_demand;
    drop table if exists purchase_order_attempts, purchase_order_lines, purchase_orders, reorder_rule_checks,
      reorder_rules, suppliers;
    drop function if exists stockflow_apply_incoming, stockflow_purchase_order_transition;
  `);
}
