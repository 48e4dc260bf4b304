import type { Knex } from 'knex';

/** The `monitor` scope: read-only operations (`/metrics`, `GET /api/ops/*`); `admin` implies it. */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    alter table api_keys drop constraint api_keys_scopes_known;
    alter table api_keys add constraint api_keys_scopes_known
      check (cardinality(scopes) > 0 and scopes <@ array['pms', 'admin', 'ops', 'monitor']);
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw(`
    alter table api_keys drop constraint api_keys_scopes_known;
    alter table api_keys add constraint api_keys_scopes_known
      check (cardinality(scopes) > 0 and scopes <@ array['pms', 'admin', 'ops']);
  `);
}
