-- A versioned row's version rises by one on every update; created_at cannot be rewritten.
-- Fired by: <table>_version_on_update (before update) on products, locations, reservations,
-- webhook_endpoints, images, orders, suppliers, reorder_rules, purchase_orders.
create or replace function stockflow_version_on_update() returns trigger language plpgsql as $$
begin
  new.version := old.version + 1;
  new.created_at := old.created_at;
  new.updated_at := now();
  return new;
end $$;
