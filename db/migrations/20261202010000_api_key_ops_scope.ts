import type { Knex } from 'knex';

/** The `ops` scope (Bull Board's write actions), given to a key on purpose and never implied by `admin`. */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    alter table api_keys drop constraint api_keys_scopes_known;
    alter table api_keys add constraint api_keys_scopes_known
      check (cardinality(scopes) > 0 and scopes <@ array['pms', 'admin', 'ops']);
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw(`
    alter table api_keys drop constraint api_keys_scopes_known;
    alter table api_keys add constraint api_keys_scopes_known
      check (cardinality(scopes) > 0 and scopes <@ array['pms', 'admin']);
  `);
}
