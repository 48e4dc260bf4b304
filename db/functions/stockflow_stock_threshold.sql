-- THE threshold of a level's low-stock state: the one place it is chosen. The reorder point of the
-- level's reorder rule when it has one (the fixed point, or the last point the planner computed for an
-- automatic rule), else its safety stock.
create or replace function stockflow_stock_threshold(p_sku text, p_location text, p_safety_stock bigint)
  returns bigint language sql stable as $$
  select coalesce(
    (select coalesce(r.reorder_point, c.reorder_point)
       from reorder_rules r left join reorder_rule_checks c on c.rule_id = r.id
      where r.sku = p_sku and r.location = p_location),
    p_safety_stock)
$$;
