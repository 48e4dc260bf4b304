import type { Knex } from 'knex';
import type { Config } from '../config.js';
import { horizonFor } from '../events/horizon.js';
import { readAtCursor } from '../events/outbox-cursor.js';
import { addFollowUps, type FollowUp, followUpJobId } from '../queues/follow-ups.js';
import type { Queues } from '../queues/queues.js';
import { matchesType } from '../schemas/type-patterns.js';
import { queueDeliveryJobs, takeHeldDeliveries } from './delivery-jobs.js';

/**
 * The outbox relay: turns events into webhook delivery jobs, one per event and matching endpoint.
 * It reads the log through its cursor (`webhooks` in `outbox_cursors`, src/events/outbox-cursor.ts)
 * and in one transaction per batch creates the delivery rows, adds their jobs and moves the
 * cursor. Jobs are added before the commit, under ids derived from (event, endpoint): if the
 * commit is lost, the next run adds the same jobs again and BullMQ keeps one. A delivery job that
 * starts before the commit waits on the uncommitted delivery row.
 */

const batchSize = 1000;
const resumeBatchSize = 500;

interface RelayDeps {
  db: Knex;
  queues: Queues;
  config: Config;
}

interface EndpointRoute {
  id: string;
  event_types: string[];
  status: 'enabled' | 'disabled';
  created_seq: number;
}

interface EventHead {
  seq: number;
  id: string;
  type: string;
  aggregate_type: string;
  aggregate_id: string;
}

/** Whether the relay delivers this event to this endpoint. */
export function routes(endpoint: EndpointRoute, event: EventHead): boolean {
  if (event.seq <= endpoint.created_seq) return false;
  // An endpoint never receives the events about itself (a failing endpoint would feed its own failures).
  if (event.aggregate_type === 'webhook_endpoint' && event.aggregate_id === endpoint.id) return false;
  return matchesType(endpoint.event_types, event.type);
}

export async function relayOutbox(
  deps: RelayDeps,
  budgetMs: number,
): Promise<{ events: number; deliveries: number; resumed: number }> {
  const deadline = Date.now() + budgetMs;
  const horizon = horizonFor(deps.db);
  const totals = { events: 0, deliveries: 0, resumed: await resumeHeldDeliveries(deps) };
  while (Date.now() < deadline) {
    const proven = await horizon.refresh(Math.max(100, deadline - Date.now()));
    const batch = await readAtCursor(
      deps.db,
      { name: 'webhooks', horizon: proven, limit: batchSize },
      (trx, events) => queueDeliveries(deps, trx, events),
    );
    if (!batch) break;
    totals.events += batch.events;
    totals.deliveries += batch.result;
    if (!batch.more) break;
  }
  return totals;
}

const firstDelivery = (eventId: string, endpointId: string): FollowUp => ({
  kind: 'delivery',
  payload: { eventId, endpointId, cause: 'new' },
});

/** Creates the deliveries of these events (held for disabled endpoints) and adds the pending ones' jobs. */
async function queueDeliveries(deps: RelayDeps, trx: Knex.Transaction, events: EventHead[]): Promise<number> {
  const endpoints = (await trx('webhook_endpoints').select(
    'id',
    'event_types',
    'status',
    'created_seq',
  )) as EndpointRoute[];
  const rows = events.flatMap((event) =>
    endpoints
      .filter((endpoint) => routes(endpoint, event))
      .map((endpoint) => {
        const pending = endpoint.status === 'enabled';
        return {
          endpoint_id: endpoint.id,
          event_id: event.id,
          event_seq: event.seq,
          event_type: event.type,
          status: pending ? 'pending' : 'held',
          job_id: pending ? followUpJobId(firstDelivery(event.id, endpoint.id)) : null,
        };
      }),
  );
  let queued = 0;
  for (let i = 0; i < rows.length; i += 1000) {
    const inserted = (await trx('webhook_deliveries')
      .insert(rows.slice(i, i + 1000))
      .onConflict(['endpoint_id', 'event_id'])
      .ignore()
      .returning(['endpoint_id', 'event_id', 'status'])) as {
      endpoint_id: string;
      event_id: string;
      status: string;
    }[];
    const pending = inserted.filter((row) => row.status === 'pending');
    await addFollowUps(
      deps,
      pending.map((row) => firstDelivery(row.event_id, row.endpoint_id)),
    );
    queued += pending.length;
  }
  return queued;
}

/** Held deliveries of endpoints that are enabled again go back in line, oldest event first. */
async function resumeHeldDeliveries(deps: RelayDeps): Promise<number> {
  let resumed = 0;
  for (;;) {
    const count = await deps.db.transaction(async (trx) => {
      const held = await takeHeldDeliveries(trx, resumeBatchSize);
      await queueDeliveryJobs(trx, deps, held, 'resume');
      return held.length;
    });
    resumed += count;
    if (count < resumeBatchSize) return resumed;
  }
}
