-- Every new (or re-activated) location gets a zero level for every product not archived.
-- Fired by: locations_init_levels (after insert or update of active on locations).
create or replace function stockflow_init_levels_for_location() returns trigger language plpgsql as $$
begin
  if new.active and (tg_op = 'INSERT' or not old.active) then
    insert into inventory_levels (sku, location)
    select sku, new.code from products where status <> 'archived'
    on conflict do nothing;
  end if;
  return null;
end $$;
