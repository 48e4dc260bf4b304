-- Every new product gets a zero level at every active location.
-- Fired by: products_init_levels (after insert on products).
create or replace function stockflow_init_levels_for_product() returns trigger language plpgsql as $$
begin
  insert into inventory_levels (sku, location)
  select new.sku, code from locations where active
  on conflict do nothing;
  return null;
end $$;
