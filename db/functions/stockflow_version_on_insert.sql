-- Every versioned row starts at version 1; timestamps are owned by the database, whatever the caller sends.
-- Fired by: <table>_version_on_insert (before insert) on products, locations, reservations, webhook_endpoints,
-- images, orders, suppliers, reorder_rules, purchase_orders.
create or replace function stockflow_version_on_insert() returns trigger language plpgsql as $$
begin
  new.version := 1;
  new.created_at := now();
  new.updated_at := new.created_at;
  return new;
end $$;
