import type { Knex } from 'knex';

/** Outbound webhooks: endpoints (settings written by the API), deliveries and every attempt. */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    create table webhook_endpoints (
      id uuid primary key default gen_random_uuid(),
      url text not null constraint webhook_endpoints_url_http check (url ~ '^(http|https)://' and char_length(url) <= 2000),
      description text constraint webhook_endpoints_description_length check (char_length(description) <= 1000),
      event_types text[] not null constraint webhook_endpoints_event_types_present check (cardinality(event_types) between 1 and 100),
      rate_limit_per_second integer constraint webhook_endpoints_rate_limit_positive check (rate_limit_per_second > 0),
      secret text not null,
      previous_secret text,
      previous_secret_expires_at timestamptz,
      status text not null default 'enabled'
        constraint webhook_endpoints_status_known check (status in ('enabled', 'disabled')),
      disabled_reason text,
      disabled_at timestamptz,
      -- Circuit breaker: failed deliveries in a row, and since when every attempt has failed.
      consecutive_failures integer not null default 0,
      failing_since timestamptz,
      last_success_at timestamptz,
      -- Events up to this seq existed before the endpoint and are not delivered to it (replay can).
      created_seq bigint not null default 0,
      version integer not null default 1,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create trigger webhook_endpoints_version_on_insert before insert on webhook_endpoints
      for each row execute function stockflow_version_on_insert();
    create trigger webhook_endpoints_version_on_update before update on webhook_endpoints
      for each row execute function stockflow_version_on_update();

    -- One row per endpoint x event. Deleting the endpoint or pruning the event removes it.
    create table webhook_deliveries (
      id uuid primary key default gen_random_uuid(),
      endpoint_id uuid not null references webhook_endpoints (id) on delete cascade,
      event_id uuid not null references events (id) on delete cascade,
      event_seq bigint not null,
      event_type text not null,
      status text not null default 'pending'
        constraint webhook_deliveries_status_known check (status in ('pending', 'delivered', 'failed', 'held')),
      attempts integer not null default 0,
      -- Bumped by every manual retry, resume and replay: part of the next job's id.
      enqueue_count integer not null default 0,
      last_attempt_at timestamptz,
      last_status_code integer,
      last_error text,
      delivered_at timestamptz,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      constraint webhook_deliveries_once unique (endpoint_id, event_id)
    );
    create index webhook_deliveries_endpoint_status on webhook_deliveries (endpoint_id, status, event_seq);
    create index webhook_deliveries_held on webhook_deliveries (endpoint_id, event_seq) where status = 'held';
    create index webhook_deliveries_event on webhook_deliveries (event_id);

    create table webhook_attempts (
      id bigint generated always as identity primary key,
      delivery_id uuid not null references webhook_deliveries (id) on delete cascade,
      attempt integer not null,
      job_id text,
      worker text,
      started_at timestamptz not null,
      duration_ms integer not null,
      status_code integer,
      response_body text,
      error text,
      outcome text not null
        constraint webhook_attempts_outcome_known check (outcome in ('delivered', 'failed', 'gone', 'refused'))
    );
    create index webhook_attempts_delivery on webhook_attempts (delivery_id, id);

    insert into outbox_cursors (name, position) values ('webhooks', 0);
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw(`
    delete from outbox_cursors where name = 'webhooks';
    drop table if exists webhook_attempts, webhook_deliveries, webhook_endpoints;
  `);
}
