import type { Knex } from 'knex';

/**
 * `unresolved`: a purchase order that may have reached its supplier but whose outcome could not be
 * taken (a 2xx answer outside the protocol: not JSON, over 64 KiB, more accepted than ordered, a
 * sku not on the order; or every attempt ended without a definite answer). It no longer counts as
 * incoming, but its rules do not order again until an operator resolves it (acknowledge, resend)
 * or cancels it: ordering again under a new Idempotency-Key could place the same need twice.
 * The attempt of a 2xx answer that broke the protocol is recorded as `protocol_error`.
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    alter table purchase_orders drop constraint purchase_orders_status_known;
    alter table purchase_orders add constraint purchase_orders_status_known check (status in
      ('draft', 'sent', 'acknowledged', 'rejected', 'failed', 'unresolved', 'partially_received', 'received',
       'cancelled'));

    -- The transitions of src/domain/purchase-orders.ts (purchaseOrderTransitions), as the last line of defence.
    create or replace function stockflow_purchase_order_transition() returns trigger language plpgsql as $$
    begin
      if new.status is distinct from old.status and not (
           old.status = 'draft' and new.status in ('sent', 'cancelled')
        or old.status = 'sent' and new.status in ('acknowledged', 'rejected', 'failed', 'unresolved', 'cancelled')
        or old.status = 'unresolved' and new.status in ('sent', 'acknowledged', 'cancelled')
        or old.status = 'acknowledged' and new.status in ('partially_received', 'received', 'cancelled')
        or old.status = 'partially_received' and new.status = 'received') then
        raise exception 'purchase order % cannot go from % to %', old.id, old.status, new.status
          using errcode = 'check_violation';
      end if;
      return new;
    end $$;

    alter table purchase_order_attempts drop constraint purchase_order_attempts_outcome_known;
    alter table purchase_order_attempts add constraint purchase_order_attempts_outcome_known check (outcome in
      ('acknowledged', 'rejected', 'retry', 'failed', 'refused', 'protocol_error'));

    -- The planner asks, for every due rule, whether it has a line on an unresolved order.
    create index purchase_order_lines_unresolved_rule on purchase_order_lines (rule_id) where po_status = 'unresolved';
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw(`
    drop index if exists purchase_order_lines_unresolved_rule;
    alter table purchase_order_attempts drop constraint purchase_order_attempts_outcome_known;
    alter table purchase_order_attempts add constraint purchase_order_attempts_outcome_known check (outcome in
      ('acknowledged', 'rejected', 'retry', 'failed', 'refused'));
    create or replace function stockflow_purchase_order_transition() returns trigger language plpgsql as $$
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
    alter table purchase_orders drop constraint purchase_orders_status_known;
    alter table purchase_orders add constraint purchase_orders_status_known check (status in
      ('draft', 'sent', 'acknowledged', 'rejected', 'failed', 'partially_received', 'received', 'cancelled'));
  `);
}
