import type { Knex } from 'knex';
import type { LogEvent } from '../schemas/events.js';
import type { DeliveryStatus, WebhookAttempt, WebhookDelivery } from '../schemas/webhooks.js';
import type { EndpointRow } from './endpoints.js';

export interface DeliveryRow {
  id: string;
  endpoint_id: string;
  event_id: string;
  event_seq: number;
  event_type: string;
  status: DeliveryStatus;
  attempts: number;
  enqueue_count: number;
  /** The job that may attempt the delivery now (null on rows from before jobs were recorded). */
  job_id: string | null;
  attempt_started_at: Date | null;
  last_attempt_at: Date | null;
  last_status_code: number | null;
  last_error: string | null;
  delivered_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

const iso = (d: Date | null) => d?.toISOString() ?? null;

export function toDelivery(row: DeliveryRow): WebhookDelivery {
  return {
    id: row.id,
    endpointId: row.endpoint_id,
    eventId: row.event_id,
    eventSeq: row.event_seq,
    eventType: row.event_type,
    status: row.status,
    attempts: row.attempts,
    lastAttemptAt: iso(row.last_attempt_at),
    lastStatusCode: row.last_status_code,
    lastError: row.last_error,
    deliveredAt: iso(row.delivered_at),
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

/**
 * Makes sure the delivery row of (endpoint, event) exists. A delivery job may run before the relay
 * that queued it has committed: the insert then waits on the relay's row and finds it. A row this
 * creates (the relay's transaction was lost) is owned by the job that creates it.
 */
export async function ensureDelivery(
  db: Knex,
  endpointId: string,
  eventId: string,
  jobId: string,
): Promise<void> {
  await db.raw(
    `insert into webhook_deliveries (endpoint_id, event_id, event_seq, event_type, job_id)
     select w.id, e.id, e.seq, e.type, ? from webhook_endpoints w, events e where w.id = ? and e.id = ?
     on conflict (endpoint_id, event_id) do nothing`,
    [jobId, endpointId, eventId],
  );
}

/** A delivery with its endpoint and event, as the worker needs them for one attempt. */
export interface DeliveryContext {
  delivery: DeliveryRow;
  endpoint: EndpointRow;
  event: LogEvent;
}

export async function loadDeliveryContext(
  db: Knex,
  endpointId: string,
  eventId: string,
): Promise<DeliveryContext | undefined> {
  const { rows } = await db.raw<{ rows: { d: DeliveryRow; w: EndpointRow; e: Record<string, unknown> }[] }>(
    `select to_jsonb(d) as d, to_jsonb(w) as w,
            jsonb_build_object('seq', e.seq, 'id', e.id, 'type', e.type, 'aggregate_type', e.aggregate_type,
              'aggregate_id', e.aggregate_id, 'data', e.data, 'job_id', e.job_id, 'actor', e.actor,
              'occurred_at', e.occurred_at) as e
     from webhook_deliveries d
     join webhook_endpoints w on w.id = d.endpoint_id
     join events e on e.id = d.event_id
     where d.endpoint_id = ? and d.event_id = ?`,
    [endpointId, eventId],
  );
  const row = rows[0];
  if (!row) return undefined;
  const dates = <T extends Record<string, unknown>>(o: T, keys: string[]) => {
    for (const key of keys)
      if (typeof o[key] === 'string') (o as Record<string, unknown>)[key] = new Date(o[key] as string);
    return o;
  };
  const delivery = dates(row.d as unknown as Record<string, unknown>, [
    'last_attempt_at',
    'attempt_started_at',
    'delivered_at',
    'created_at',
    'updated_at',
  ]) as unknown as DeliveryRow;
  const endpoint = dates(row.w as unknown as Record<string, unknown>, [
    'previous_secret_expires_at',
    'disabled_at',
    'failing_since',
    'last_success_at',
    'created_at',
    'updated_at',
  ]) as unknown as EndpointRow;
  const e = row.e;
  const event: LogEvent = {
    seq: Number(e.seq),
    id: e.id as string,
    type: e.type as string,
    aggregate: { type: e.aggregate_type as string, id: e.aggregate_id as string },
    data: e.data as Record<string, unknown>,
    jobId: (e.job_id as string | null) ?? null,
    actor: (e.actor as string | null) ?? null,
    occurredAt: new Date(e.occurred_at as string).toISOString(),
  };
  return { delivery, endpoint, event };
}

/** Marks an attempt as begun, so the sweep leaves the delivery alone while it may be in flight. */
export async function markAttemptStarted(db: Knex, id: string): Promise<void> {
  await db('webhook_deliveries').where({ id }).update({ attempt_started_at: db.fn.now() });
}

export async function setDeliveryStatus(db: Knex, id: string, status: DeliveryStatus): Promise<void> {
  await db('webhook_deliveries').where({ id }).update({ status, updated_at: db.fn.now() });
}

/** Records one attempt and moves the delivery to `status`, in one statement. */
export async function recordAttempt(
  db: Knex,
  input: {
    delivery: DeliveryRow;
    status: DeliveryStatus;
    attempt: Omit<WebhookAttempt, 'attempt'> & { startedAt: string };
  },
): Promise<DeliveryRow> {
  const { delivery, attempt } = input;
  const { rows } = await db.raw<{ rows: DeliveryRow[] }>(
    `with d as (
       update webhook_deliveries
       set status = ?, attempts = attempts + 1, last_attempt_at = ?, last_status_code = ?, last_error = ?,
           delivered_at = case when ? = 'delivered' then now() else delivered_at end, updated_at = now()
       where id = ?
       returning *),
     a as (
       insert into webhook_attempts (delivery_id, attempt, job_id, worker, started_at, duration_ms,
                                     status_code, response_body, error, outcome)
       select d.id, d.attempts, ?, ?, ?, ?, ?, ?, ?, ? from d)
     select * from d`,
    [
      input.status,
      attempt.startedAt,
      attempt.statusCode,
      attempt.error,
      input.status,
      delivery.id,
      attempt.jobId,
      attempt.worker,
      attempt.startedAt,
      attempt.durationMs,
      attempt.statusCode,
      attempt.responseBody,
      attempt.error,
      attempt.outcome,
    ],
  );
  return rows[0]!;
}

/**
 * The attempt a job began at `startedAt`, if it is recorded already, with where its delivery stands
 * now: a record tried again after its commit's answer was lost, or a pending attempt recorded by a
 * run that stopped before it could say so, is not recorded twice.
 */
export async function findRecordedAttempt(
  db: Knex,
  deliveryId: string,
  attempt: Pick<WebhookAttempt, 'jobId' | 'startedAt'>,
): Promise<{ attempt: number; status: DeliveryStatus } | undefined> {
  return db('webhook_attempts as a')
    .join('webhook_deliveries as d', 'd.id', 'a.delivery_id')
    .where({ 'a.delivery_id': deliveryId, 'a.job_id': attempt.jobId, 'a.started_at': attempt.startedAt })
    .first('a.attempt', 'd.status');
}

export async function getDelivery(
  db: Knex,
  id: string,
): Promise<(WebhookDelivery & { attemptLog: WebhookAttempt[] }) | undefined> {
  const row = (await db<DeliveryRow>('webhook_deliveries').where({ id }).first()) as DeliveryRow | undefined;
  if (!row) return undefined;
  const attempts = await db('webhook_attempts').where({ delivery_id: id }).orderBy('id');
  return {
    ...toDelivery(row),
    attemptLog: attempts.map((a) => ({
      attempt: a.attempt,
      startedAt: a.started_at.toISOString(),
      durationMs: a.duration_ms,
      statusCode: a.status_code,
      responseBody: a.response_body,
      error: a.error,
      outcome: a.outcome,
      jobId: a.job_id,
      worker: a.worker,
    })),
  };
}

/** An endpoint's deliveries, newest event first, keyset-paginated by event seq. */
export async function listDeliveries(
  db: Knex,
  query: { endpointId: string; status?: DeliveryStatus; limit: number; before?: number },
): Promise<{ items: WebhookDelivery[]; nextBefore: number | null }> {
  const builder = db<DeliveryRow>('webhook_deliveries')
    .where({ endpoint_id: query.endpointId })
    .orderBy('event_seq', 'desc')
    .limit(query.limit + 1);
  if (query.status) builder.andWhere({ status: query.status });
  if (query.before !== undefined) builder.andWhere('event_seq', '<', query.before);
  const rows = (await builder) as DeliveryRow[];
  const items = rows.slice(0, query.limit).map(toDelivery);
  const more = rows.length > query.limit;
  return { items, nextBefore: more ? items[items.length - 1]!.eventSeq : null };
}
