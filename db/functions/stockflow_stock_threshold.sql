-- THE threshold of a level's low-stock state: the one place it is chosen. The level's reorder point
-- when it has one, else its safety stock. inventory_levels.reorder_point is the point of the level's
-- reorder rule (the fixed point, or the last point the planner computed for an automatic rule), written
-- by the reordering domain in the transaction that sets or computes it (storeLevelReorderPoint), so the
-- stock triggers read the level alone.
create or replace function stockflow_stock_threshold(p_reorder_point bigint, p_safety_stock bigint)
  returns bigint language sql immutable as $$
  select coalesce(p_reorder_point, p_safety_stock)
$$;
