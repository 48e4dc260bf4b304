import type { Knex } from 'knex';

/**
 * Foundation schema: products, the event log (outbox), the audit trail, exactly-once bookkeeping
 * for jobs, and API keys. Shared trigger functions (`stockflow_*`) are meant for reuse by later
 * tables: versioning, timestamps, auditing, append-only guards.
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    -- Every versioned row: version starts at 1 and rises by one on every update; timestamps are
    -- owned by the database, whatever the caller sends.
    create function stockflow_version_on_insert() returns trigger language plpgsql as $$
    begin
      new.version := 1;
      new.created_at := now();
      new.updated_at := new.created_at;
      return new;
    end $$;

    create function stockflow_version_on_update() returns trigger language plpgsql as $$
    begin
      new.version := old.version + 1;
      new.created_at := old.created_at;
      new.updated_at := now();
      return new;
    end $$;

    -- Audit trail: one row per insert/update/delete with before/after images. The actor and job
    -- id come from transaction-local settings the worker sets (set_config(..., true)).
    create function stockflow_audit() returns trigger language plpgsql as $$
    declare
      key_column text := tg_argv[0];
    begin
      insert into audit_log (table_name, row_key, op, before, after, actor, job_id)
      values (
        tg_table_name,
        case when tg_op = 'DELETE' then to_jsonb(old) ->> key_column else to_jsonb(new) ->> key_column end,
        tg_op,
        case when tg_op <> 'INSERT' then to_jsonb(old) end,
        case when tg_op <> 'DELETE' then to_jsonb(new) end,
        nullif(current_setting('stockflow.actor', true), ''),
        nullif(current_setting('stockflow.job_id', true), '')
      );
      return null;
    end $$;

    -- For logs that must never be rewritten (audit trail, stock ledger).
    create function stockflow_forbid_change() returns trigger language plpgsql as $$
    begin
      raise exception '% is append-only: % is not allowed', tg_table_name, tg_op
        using errcode = 'restrict_violation';
    end $$;

    create table products (
      sku text primary key constraint products_sku_format check (sku ~ '^[A-Za-z0-9._-]{1,64}$'),
      name text not null constraint products_name_length check (char_length(name) between 1 and 300),
      description text constraint products_description_length check (char_length(description) <= 10000),
      price_amount bigint not null constraint products_price_amount_non_negative check (price_amount >= 0),
      price_currency char(3) not null constraint products_price_currency_format check (price_currency ~ '^[A-Z]{3}$'),
      status text not null default 'draft'
        constraint products_status_known check (status in ('draft', 'published', 'archived')),
      attributes jsonb not null default '{}'
        constraint products_attributes_object check (jsonb_typeof(attributes) = 'object'),
      version integer not null default 1,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      published_at timestamptz
    );
    create index products_status_sku on products (status, sku);

    create trigger products_version_on_insert before insert on products
      for each row execute function stockflow_version_on_insert();
    create trigger products_version_on_update before update on products
      for each row execute function stockflow_version_on_update();

    create table audit_log (
      id bigint generated always as identity primary key,
      table_name text not null,
      row_key text not null,
      op text not null check (op in ('INSERT', 'UPDATE', 'DELETE')),
      before jsonb,
      after jsonb,
      actor text,
      job_id text,
      at timestamptz not null default now()
    );
    create index audit_log_row on audit_log (table_name, row_key, id);
    create trigger audit_log_append_only before update or delete on audit_log
      for each row execute function stockflow_forbid_change();

    create trigger products_audit after insert or update or delete on products
      for each row execute function stockflow_audit('sku');

    -- The domain event log and outbox: written in the same transaction as the change it records.
    create table events (
      seq bigint generated always as identity primary key,
      id uuid not null default gen_random_uuid() unique,
      type text not null,
      aggregate_type text not null,
      aggregate_id text not null,
      data jsonb not null,
      job_id text,
      actor text,
      occurred_at timestamptz not null default now()
    );
    create index events_aggregate on events (aggregate_type, aggregate_id, seq);

    -- Exactly-once effects: a job's id is claimed inside the transaction that applies it.
    create table applied_jobs (
      job_id text primary key,
      queue text not null,
      name text not null,
      result jsonb,
      applied_at timestamptz not null default now()
    );
    create index applied_jobs_applied_at on applied_jobs (applied_at);

    create table api_keys (
      id uuid primary key default gen_random_uuid(),
      name text not null constraint api_keys_name_format check (name ~ '^[A-Za-z0-9._-]{1,64}$'),
      key_hash text not null unique,
      key_prefix text not null,
      scopes text[] not null
        constraint api_keys_scopes_known check (cardinality(scopes) > 0 and scopes <@ array['pms', 'admin']),
      created_at timestamptz not null default now(),
      last_used_at timestamptz,
      revoked_at timestamptz
    );
    create unique index api_keys_active_name on api_keys (name) where revoked_at is null;
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw(`
    drop table if exists api_keys, applied_jobs, events, audit_log, products;
    drop function if exists stockflow_forbid_change, stockflow_audit, stockflow_version_on_update,
      stockflow_version_on_insert;
  `);
}
