-- Applies a purchase order line's change of outstanding to its level's incoming (the level guard lets
-- it through at depth 2).
-- Fired by: purchase_order_lines_incoming (after insert, update or delete on purchase_order_lines).
create or replace function stockflow_apply_incoming() returns trigger language plpgsql as $$
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
