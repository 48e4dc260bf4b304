-- The status an order's lines and flags say it has, and whether they are consistent at all.
create or replace function stockflow_order_state(o orders, out status text, out problem text)
language plpgsql stable as $$
declare
  open_units bigint;
  fulfilled_units bigint;
  cancelled_units bigint;
begin
  select coalesce(sum(l.open_reserved), 0), coalesce(sum(l.fulfilled), 0), coalesce(sum(l.cancelled), 0)
    into open_units, fulfilled_units, cancelled_units
    from order_lines l where l.order_id = o.id;
  status := stockflow_order_status(o.confirmed_at is not null, o.cancelled_at is not null,
    o.expired_at is not null, open_units, fulfilled_units);
  problem := case
    when o.expired_at is not null and (open_units > 0 or fulfilled_units > 0)
      then 'an expired order holds or fulfilled units'
    when o.cancelled_at is not null and open_units > 0 then 'a cancelled order still holds units'
    when o.cancelled_at is null and o.expired_at is null and cancelled_units > 0
      then 'an open order has cancelled units'
    when fulfilled_units > 0 and o.confirmed_at is null then 'an unconfirmed order has fulfilled units'
  end;
end $$;
