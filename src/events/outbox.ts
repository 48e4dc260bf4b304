import type { Knex } from 'knex';
import { type EventType, urlPathsOfType } from './catalogue.js';
import { redactUrlsAt } from './event-urls.js';

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

/** Writes several events in one statement (one round trip), in order; see appendEvent. */
export async function appendEvents(db: Knex, events: NewEvent[]): Promise<{ seq: number; id: string }[]> {
  if (events.length === 0) return [];
  const { rows } = await db.raw<{ rows: { seq: number; id: string }[] }>(
    `insert into events (type, aggregate_type, aggregate_id, data, job_id, actor)
     select type, aggregate_type, aggregate_id, data,
            nullif(current_setting('stockflow.job_id', true), ''),
            nullif(current_setting('stockflow.actor', true), '')
     from unnest(?::text[], ?::text[], ?::text[], ?::jsonb[]) with ordinality
       as e (type, aggregate_type, aggregate_id, data, n)
     order by n
     returning seq, id`,
    [
      events.map((e) => e.type),
      events.map((e) => e.aggregate.type),
      events.map((e) => e.aggregate.id),
      events.map(storedData),
    ],
  );
  return rows;
}

/**
 * Like `appendEvents`, with each event's job id and actor given: the events of several jobs in one
 * statement (the group-commit batch).
 */
export async function appendJobEvents(
  db: Knex,
  events: (NewEvent & { jobId: string; actor: string })[],
): Promise<void> {
  if (events.length === 0) return;
  await db.raw(
    `insert into events (type, aggregate_type, aggregate_id, data, job_id, actor)
     select type, aggregate_type, aggregate_id, data, job_id, actor
     from unnest(?::text[], ?::text[], ?::text[], ?::jsonb[], ?::text[], ?::text[]) with ordinality
       as e (type, aggregate_type, aggregate_id, data, job_id, actor, n)
     order by n`,
    [
      events.map((e) => e.type),
      events.map((e) => e.aggregate.type),
      events.map((e) => e.aggregate.id),
      events.map(storedData),
      events.map((e) => e.jobId),
      events.map((e) => e.actor),
    ],
  );
}

/**
 * Writes a domain event into the log/outbox, inside the caller's transaction, so the event exists
 * if and only if the change does. Actor and job id come from the transaction-local settings the
 * worker sets when it opens the transaction.
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

/** Sets the actor (and job id) that appendEvent and audit triggers record, for this transaction only. */
export async function setTransactionActor(db: Knex, actor: string, jobId?: string): Promise<void> {
  await db.raw(`select set_config('stockflow.actor', ?, true), set_config('stockflow.job_id', ?, true)`, [
    actor,
    jobId ?? '',
  ]);
}
