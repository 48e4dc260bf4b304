import type { Knex } from 'knex';

/** A key may expire (`npm run keys -- create … --expires-in 90d`): past `expires_at` it is refused like a revoked one. */
export async function up(db: Knex): Promise<void> {
  await db.raw('alter table api_keys add column expires_at timestamptz');
}

export async function down(db: Knex): Promise<void> {
  await db.raw('alter table api_keys drop column expires_at');
}
