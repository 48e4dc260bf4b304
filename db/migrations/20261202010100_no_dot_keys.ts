import type { Knex } from 'knex';

/**
 * `.` and `..` are not skus or location codes: they would name the current or parent directory in
 * every URL that carries them. NOT VALID: enforced for every new row without rechecking old ones
 * (a deployed database may hold such a row; it stays readable and can be deleted).
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    alter table products add constraint products_sku_not_dot check (sku not in ('.', '..')) not valid;
    alter table locations add constraint locations_code_not_dot check (code not in ('.', '..')) not valid;
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw(`
    alter table products drop constraint products_sku_not_dot;
    alter table locations drop constraint locations_code_not_dot;
  `);
}
