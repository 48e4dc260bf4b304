import type { Knex } from 'knex';

/**
 * The event log as a feed: named consumer positions, the retention watermark, relay cursors, and
 * what readers need to prove which positions are final (src/events/horizon.ts).
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    -- The horizon proof reads the sequence's last value: with a cache above 1 a backend could
    -- later commit a seq it had drawn in advance, below a horizon already served.
    alter table events alter column seq set cache 1;
    create index events_occurred_at on events (occurred_at);

    -- One row: every event with seq <= pruned_through_seq has been deleted by retention.
    create table event_log_state (
      id boolean primary key default true constraint event_log_state_single check (id),
      pruned_through_seq bigint not null default 0,
      pruned_at timestamptz
    );
    insert into event_log_state default values;

    -- Named consumers (the PMS and its replicas) and the last seq each has acknowledged.
    create table event_consumers (
      name text primary key constraint event_consumers_name_format check (name ~ '^[A-Za-z0-9._:-]{1,100}$'),
      acked_seq bigint not null default 0 constraint event_consumers_acked_seq_non_negative check (acked_seq >= 0),
      last_ack_at timestamptz,
      created_at timestamptz not null default now()
    );

    -- Relays that turn events into work (webhook deliveries); each remembers how far it got.
    create table outbox_cursors (
      name text primary key,
      position bigint not null default 0,
      updated_at timestamptz not null default now()
    );
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw(`
    drop table if exists outbox_cursors, event_consumers, event_log_state;
    drop index if exists events_occurred_at;
  `);
}
