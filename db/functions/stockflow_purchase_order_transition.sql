-- The transitions of src/domain/purchase-orders.ts (purchaseOrderTransitions), as the last line of defence.
-- Fired by: purchase_orders_transition (before update of status on purchase_orders).
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
