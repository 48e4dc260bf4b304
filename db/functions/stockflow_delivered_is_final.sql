-- A delivered webhook delivery stays delivered: a failed attempt racing a manual retry, or a requeue,
-- cannot turn it back (its attempts are still recorded).
-- Fired by: webhook_deliveries_delivered_is_final (before update on webhook_deliveries, when a delivered
-- row would leave delivered).
create or replace function stockflow_delivered_is_final() returns trigger language plpgsql as $$
begin
  new.status := 'delivered';
  new.delivered_at := old.delivered_at;
  return new;
end $$;
