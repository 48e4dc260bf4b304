import type { Knex } from 'knex';

/**
 * `.` and `..` are not order numbers, as they are not skus, location or supplier codes: they would
 * name the current or parent directory in every URL that carries them. NOT VALID: enforced for
 * every new row without rechecking old ones (a deployed database may hold such an order; it stays
 * readable).
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(
    `alter table orders add constraint orders_number_not_dot check (order_number not in ('.', '..')) not valid`,
  );
}

export async function down(db: Knex): Promise<void> {
  await db.raw('alter table orders drop constraint orders_number_not_dot');
}
