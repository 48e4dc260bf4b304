import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { lastDrawnSeq } from '../events/horizon.js';
import { appendEvent } from '../events/outbox.js';
import type { EventType } from '../schemas/event-types.js';
import type { EndpointFields } from '../schemas/webhook-endpoints.js';
import type { WebhookEndpoint } from '../schemas/webhooks.js';
import type { SecretBox } from '../secrets.js';
import { generateSecret } from './signing.js';

/**
 * Webhook endpoints: settings the API writes directly (not domain mutations). Every change of an
 * endpoint's state is also an event (`webhook.endpoint_*`), so the PMS sees it in the feed.
 * Functions take the caller's transaction; the actor comes from its transaction-local settings.
 */
export interface EndpointRow {
  id: string;
  url: string;
  description: string | null;
  event_types: string[];
  rate_limit_per_second: number | null;
  /** Sealed with the secret box (src/secrets.ts): never the plaintext. */
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: Date | null;
  status: 'enabled' | 'disabled';
  disabled_reason: string | null;
  disabled_at: Date | null;
  consecutive_failures: number;
  failing_since: Date | null;
  last_success_at: Date | null;
  created_seq: number;
  version: number;
  created_at: Date;
  updated_at: Date;
}

/** Why the circuit breaker (or the receiver) turned an endpoint off. */
export type DisabledReason = 'gone' | 'consecutive_failures' | 'failing_span';

const iso = (d: Date | null) => d?.toISOString() ?? null;

export function toEndpoint(row: EndpointRow): WebhookEndpoint {
  const previousActive = row.previous_secret_expires_at && row.previous_secret_expires_at > new Date();
  return {
    id: row.id,
    url: row.url,
    description: row.description,
    eventTypes: row.event_types,
    rateLimitPerSecond: row.rate_limit_per_second,
    status: row.status,
    disabledReason: row.disabled_reason,
    disabledAt: iso(row.disabled_at),
    consecutiveFailures: row.consecutive_failures,
    failingSince: iso(row.failing_since),
    lastSuccessAt: iso(row.last_success_at),
    previousSecretExpiresAt: previousActive ? iso(row.previous_secret_expires_at) : null,
    version: row.version,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

/** The secrets that sign a delivery now, opened: the current one, and the previous one during its overlap. */
export function signingSecrets(
  row: Pick<EndpointRow, 'id' | 'secret' | 'previous_secret' | 'previous_secret_expires_at'>,
  box: SecretBox,
): string[] {
  const current = box.open(row.secret, { column: 'webhook_endpoints.secret', row: row.id });
  if (!row.previous_secret || !row.previous_secret_expires_at || row.previous_secret_expires_at <= new Date())
    return [current];
  return [
    current,
    box.open(row.previous_secret, { column: 'webhook_endpoints.previous_secret', row: row.id }),
  ];
}

async function endpointEvent(
  db: Knex,
  type: EventType,
  row: EndpointRow,
  extra: Record<string, unknown> = {},
) {
  // The outbox redacts the URL (a receiver's credentials may sit in its query string).
  await appendEvent(db, {
    type,
    aggregate: { type: 'webhook_endpoint', id: row.id },
    data: { endpoint: toEndpoint(row), ...extra },
  });
}

const columns = (fields: EndpointFields) => ({
  url: fields.url,
  event_types: fields.eventTypes,
  description: fields.description ?? null,
  rate_limit_per_second: fields.rateLimitPerSecond ?? null,
});

/** Creates an endpoint; its secret is returned here and never again. */
export async function createEndpoint(
  db: Knex,
  fields: EndpointFields,
  box: SecretBox,
): Promise<{ endpoint: WebhookEndpoint; secret: string }> {
  const secret = generateSecret();
  // The id is chosen here: the sealed secret is bound to its row.
  const id = randomUUID();
  // Events already drawn belong to the past: the endpoint receives what happens from now on.
  const createdSeq = await lastDrawnSeq(db);
  const [row] = await db<EndpointRow>('webhook_endpoints')
    .insert({
      id,
      ...columns(fields),
      secret: box.seal(secret, { column: 'webhook_endpoints.secret', row: id }),
      created_seq: createdSeq,
    } as never)
    .returning('*');
  await endpointEvent(db, 'webhook.endpoint_created', row!);
  return { endpoint: toEndpoint(row!), secret };
}

export async function getEndpointRow(db: Knex, id: string, lock = false): Promise<EndpointRow | undefined> {
  const query = db<EndpointRow>('webhook_endpoints').where({ id });
  if (lock) query.forUpdate();
  return (await query.first()) as EndpointRow | undefined;
}

export async function listEndpoints(db: Knex): Promise<WebhookEndpoint[]> {
  const rows = (await db<EndpointRow>('webhook_endpoints').orderBy('created_at')) as EndpointRow[];
  return rows.map(toEndpoint);
}

export async function updateEndpoint(
  db: Knex,
  id: string,
  fields: EndpointFields,
): Promise<WebhookEndpoint | undefined> {
  const [row] = await db<EndpointRow>('webhook_endpoints')
    .where({ id })
    .update(columns(fields) as never)
    .returning('*');
  if (!row) return undefined;
  await endpointEvent(db, 'webhook.endpoint_updated', row);
  return toEndpoint(row);
}

export async function deleteEndpoint(db: Knex, id: string): Promise<boolean> {
  const [row] = await db<EndpointRow>('webhook_endpoints').where({ id }).delete().returning('*');
  if (!row) return false;
  await endpointEvent(db, 'webhook.endpoint_deleted', row);
  return true;
}

/** A new secret; the previous one keeps signing alongside it for `overlapMs`. */
export async function rotateSecret(
  db: Knex,
  id: string,
  overlapMs: number,
  box: SecretBox,
): Promise<{ endpoint: WebhookEndpoint; secret: string } | undefined> {
  const current = await getEndpointRow(db, id, true);
  if (!current) return undefined;
  const secret = generateSecret();
  // The current secret moves to the previous_secret column: sealed again for its new place.
  const previous = box.open(current.secret, { column: 'webhook_endpoints.secret', row: id });
  const [row] = await db<EndpointRow>('webhook_endpoints')
    .where({ id })
    .update({
      previous_secret: box.seal(previous, { column: 'webhook_endpoints.previous_secret', row: id }),
      previous_secret_expires_at: db.raw(`now() + make_interval(secs => ?)`, [overlapMs / 1000]),
      secret: box.seal(secret, { column: 'webhook_endpoints.secret', row: id }),
    } as never)
    .returning('*');
  if (!row) return undefined;
  await endpointEvent(db, 'webhook.endpoint_secret_rotated', row);
  return { endpoint: toEndpoint(row), secret };
}

/** Turns an endpoint back on with a fresh breaker; its held deliveries are resumed by the relay. */
export async function enableEndpoint(db: Knex, id: string): Promise<WebhookEndpoint | undefined> {
  const current = await getEndpointRow(db, id, true);
  if (!current) return undefined;
  if (current.status === 'enabled') return toEndpoint(current);
  const [row] = await db<EndpointRow>('webhook_endpoints')
    .where({ id })
    .update({
      status: 'enabled',
      disabled_reason: null,
      disabled_at: null,
      consecutive_failures: 0,
      failing_since: null,
    } as never)
    .returning('*');
  const held = await db('webhook_deliveries')
    .where({ endpoint_id: id, status: 'held' })
    .count<{ n: number }[]>('* as n');
  await endpointEvent(db, 'webhook.endpoint_enabled', row!, { heldDeliveries: Number(held[0]?.n ?? 0) });
  return toEndpoint(row!);
}

/** Disables an enabled endpoint and writes `webhook.endpoint_disabled` (once: a second call does nothing). */
export async function disableEndpoint(
  db: Knex,
  id: string,
  reason: DisabledReason,
  details: Record<string, unknown> = {},
): Promise<boolean> {
  const [row] = await db<EndpointRow>('webhook_endpoints')
    .where({ id, status: 'enabled' })
    .update({ status: 'disabled', disabled_reason: reason, disabled_at: db.fn.now() } as never)
    .returning('*');
  if (!row) return false;
  await endpointEvent(db, 'webhook.endpoint_disabled', row, { reason, ...details });
  return true;
}
