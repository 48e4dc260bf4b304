import type { Knex } from 'knex';

/**
 * The low-stock threshold of a level is its reorder rule's point when it has one (the fixed point,
 * or the last point the planner computed for an automatic rule), else its safety stock. Only the
 * one function that chooses the threshold changes; the trigger that calls it stays as it is.
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    create or replace function stockflow_stock_threshold(p_sku text, p_location text, p_safety_stock bigint)
      returns bigint language sql stable as $$
      select coalesce(
        (select coalesce(r.reorder_point, c.reorder_point)
           from reorder_rules r left join reorder_rule_checks c on c.rule_id = r.id
          where r.sku = p_sku and r.location = p_location),
        p_safety_stock)
    $$;
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw(`
    create or replace function stockflow_stock_threshold(p_sku text, p_location text, p_safety_stock bigint)
      returns bigint language sql stable as $$
      select p_safety_stock
    $$;
  `);
}
