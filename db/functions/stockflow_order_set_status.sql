-- An order's status is never written by code: it is computed on every write of the order.
-- Fired by: orders_status (before insert or update on orders).
create or replace function stockflow_order_set_status() returns trigger language plpgsql as $$
begin
  new.status := (stockflow_order_state(new)).status;
  return new;
end $$;
