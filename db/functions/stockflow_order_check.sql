-- Refuses to commit a transaction that leaves an order inconsistent, or its stored status different
-- from what its lines say (a line changed without its order). tg_argv[0]: the column of the changed
-- row that holds the order id.
-- Fired by: the deferred constraint triggers orders_status_matches_lines (on orders) and
-- order_lines_status_matches (on order_lines).
create or replace function stockflow_order_check() returns trigger language plpgsql as $$
declare
  o orders;
  state record;
begin
  -- tg_argv[0]: the column of the changed row that holds the order id.
  select * into o from orders where id = (to_jsonb(new) ->> tg_argv[0])::bigint;
  state := stockflow_order_state(o);
  if state.problem is not null then
    raise exception 'order %: %', o.order_number, state.problem using errcode = 'check_violation';
  end if;
  if o.status is distinct from state.status then
    raise exception 'order % is stored as % but its lines say %', o.order_number, o.status, state.status
      using errcode = 'check_violation';
  end if;
  return null;
end $$;
