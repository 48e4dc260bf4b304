-- A product whose currency changed has its ageing layers counted under the old one in stock_fifo_days:
-- the sku waits in stock_fifo_recount, the ageing report corrects it when read and the next compaction
-- moves it (src/reports/fifo-layers.ts), so the report never joins every product to find it.
-- Fired by: products_fifo_recount (after update of price_currency on products, when it changed).
create or replace function stockflow_fifo_recount() returns trigger language plpgsql as $$
begin
  insert into stock_fifo_recount (sku) values (new.sku) on conflict do nothing;
  return null;
end $$;
