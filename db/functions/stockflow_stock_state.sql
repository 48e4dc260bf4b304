-- A level's stock state: out (nothing available), low (at or below the threshold), in_stock.
create or replace function stockflow_stock_state(p_available bigint, p_threshold bigint)
  returns text language sql immutable as $$
  select case when p_available <= 0 then 'out' when p_available <= p_threshold then 'low' else 'in_stock' end
$$;
