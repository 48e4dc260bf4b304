import type { Knex } from 'knex';

/**
 * Deliveries that outlive their jobs (Redis lost, an enqueue that failed, a job failed as stalled):
 * - `job_id`: the one job that may attempt the delivery now; every enqueue sets it, and a job
 *   that is not (or no longer) the row's job ends without sending. The sweep re-enqueues a pending
 *   delivery whose job is gone from Redis.
 * - `attempt_started_at`: set when a job starts an attempt, so the sweep never doubles an attempt
 *   still in flight.
 * - `delivered` is final: no later write (a failed attempt racing a manual retry, a requeue) turns
 *   a delivered delivery back into pending, failed or held; the attempts are still recorded.
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    alter table webhook_deliveries add column job_id text, add column attempt_started_at timestamptz;
    create index webhook_deliveries_pending on webhook_deliveries (id) where status = 'pending';

    create function stockflow_delivered_is_final() returns trigger language plpgsql as $$
    begin
      new.status := 'delivered';
      new.delivered_at := old.delivered_at;
      return new;
    end $$;
    create trigger webhook_deliveries_delivered_is_final before update on webhook_deliveries
      for each row when (old.status = 'delivered' and new.status is distinct from 'delivered')
      execute function stockflow_delivered_is_final();
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw(`
    drop trigger if exists webhook_deliveries_delivered_is_final on webhook_deliveries;
    drop function if exists stockflow_delivered_is_final();
    drop index if exists webhook_deliveries_pending;
    alter table webhook_deliveries drop column if exists job_id, drop column if exists attempt_started_at;
  `);
}
