import type { Knex } from 'knex';
import { type EventType, urlPathsOfType } from '../schemas/event-types.js';
import { redactUrlsAt } from '../schemas/event-urls.js';

export interface NewEvent {
  /** `aggregate.verb`, past tense: `product.created`, `product.published`; declared in the catalogue. */
  type: EventType;
  aggregate: { type: string; id: string };
  data: Record<string, unknown>;
}

/**
 * An event's data as it is stored: every URL field the catalogue declares goes through
 * `urlForEvents` (no credentials, query or fragment), whoever wrote it. Events are read by every
 * `pms` key, the streams and `*` webhook subscribers.
 */
const storedData = (event: NewEvent) => JSON.stringify(redactUrlsAt(event.data, urlPathsOfType(event.type)));

/**
 * Writes several events in one statement (one round trip), in order; see appendEvent. An event may
 * name its job id and actor: the events of several jobs in one statement (the group-commit batch).
 */
export async function appendEvents(
  db: Knex,
  events: (NewEvent & { jobId?: string; actor?: string })[],
): Promise<{ seq: number; id: string }[]> {
  if (events.length === 0) return [];
  // Prepared once per connection: one statement text for any number of events.
  const { rows } = await db
    .raw<{ rows: { seq: number; id: string }[] }>(
      `insert into events (type, aggregate_type, aggregate_id, data, job_id, actor)
     select type, aggregate_type, aggregate_id, data,
            coalesce(job_id, nullif(current_setting('stockflow.job_id', true), '')),
            coalesce(actor, nullif(current_setting('stockflow.actor', true), ''))
     from unnest(?::text[], ?::text[], ?::text[], ?::jsonb[], ?::text[], ?::text[]) with ordinality
       as e (type, aggregate_type, aggregate_id, data, job_id, actor, n)
     order by n
     returning seq, id`,
      [
        events.map((e) => e.type),
        events.map((e) => e.aggregate.type),
        events.map((e) => e.aggregate.id),
        events.map(storedData),
        events.map((e) => e.jobId ?? null),
        events.map((e) => e.actor ?? null),
      ] as Knex.RawBinding[],
    )
    .options({ name: 'stockflow_append_events' });
  return rows;
}

/**
 * Writes a domain event into the log/outbox, inside the caller's transaction, so the event exists
 * if and only if the change does. Actor and job id come from the transaction's job context
 * (src/db/job-context.ts).
 */
export async function appendEvent(db: Knex, event: NewEvent): Promise<{ seq: number; id: string }> {
  const { rows } = await db.raw<{ rows: { seq: number; id: string }[] }>(
    `insert into events (type, aggregate_type, aggregate_id, data, job_id, actor)
     values (?, ?, ?, ?::jsonb,
             nullif(current_setting('stockflow.job_id', true), ''),
             nullif(current_setting('stockflow.actor', true), ''))
     returning seq, id`,
    [event.type, event.aggregate.type, event.aggregate.id, storedData(event)],
  );
  return rows[0]!;
}
