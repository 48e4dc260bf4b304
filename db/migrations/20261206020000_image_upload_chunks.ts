import type { Knex } from 'knex';

/**
 * Uploads stream into Postgres as they arrive: the web process writes each piece of an upload in
 * progress here, and assembles the pieces into `image_uploads` in one statement once the upload
 * is complete and checked, so it never holds a whole image in memory. UNLOGGED: the pieces are
 * transient (an upload in flight when Postgres crashes has failed anyway), so they cost no WAL.
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    create unlogged table image_upload_chunks (
      upload_id uuid not null,
      seq integer not null constraint image_upload_chunks_seq_non_negative check (seq >= 0),
      bytes bytea not null,
      created_at timestamptz not null default now(),
      primary key (upload_id, seq)
    );
    create index image_upload_chunks_created_at on image_upload_chunks (created_at);
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw('drop table if exists image_upload_chunks');
}
