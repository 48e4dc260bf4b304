import type { Knex } from 'knex';

/**
 * Alerts the platform raises about itself (src/ops/alerts.ts). One row per episode: opened when
 * its condition has held long enough, resolved once it has been quiet for the hold-down period.
 * Conditions that hold but not yet long enough wait in `ops_alert_pending`.
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    create table ops_alerts (
      id uuid primary key default gen_random_uuid(),
      rule text not null constraint ops_alerts_rule_format check (rule ~ '^[a-z][a-z0-9_]{0,63}$'),
      -- What the alert is about within its rule: a queue, a route, an endpoint id, sku@location.
      subject text not null constraint ops_alerts_subject_length check (char_length(subject) between 1 and 500),
      labels jsonb not null default '{}',
      state text not null default 'open' constraint ops_alerts_state_known check (state in ('open', 'resolved')),
      -- The observed value and the threshold it crossed, as of opening and as last seen.
      value double precision not null,
      threshold double precision not null,
      details jsonb not null default '{}',
      opened_at timestamptz not null,
      last_true_at timestamptz not null,
      resolved_at timestamptz,
      constraint ops_alerts_resolved_when_not_open check ((state = 'open') = (resolved_at is null))
    );
    create unique index ops_alerts_one_open on ops_alerts (rule, subject) where state = 'open';
    create index ops_alerts_listing on ops_alerts (state, opened_at desc, id);

    create table ops_alert_pending (
      rule text not null,
      subject text not null,
      since timestamptz not null,
      primary key (rule, subject)
    );
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw('drop table if exists ops_alert_pending, ops_alerts');
}
