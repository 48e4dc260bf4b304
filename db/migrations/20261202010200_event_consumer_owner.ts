import type { Knex } from 'knex';

/**
 * Which API key created each event consumer, so a key can create only so many
 * (CONSUMERS_PER_KEY). Consumers from before have no owner and count for no key.
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    alter table event_consumers add column api_key_id uuid references api_keys (id) on delete set null;
    create index event_consumers_api_key on event_consumers (api_key_id);
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw('alter table event_consumers drop column api_key_id');
}
