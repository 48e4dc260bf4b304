-- The one definition of an order's status, from its flags and its lines' units.
create or replace function stockflow_order_status(
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
