import type { Knex } from 'knex';
import type { Config } from '../config.js';
import { addFollowUps, type FollowUp, followUpJobId } from '../queues/follow-ups.js';
import type { JobMeta } from '../queues/job.js';
import type { Queues } from '../queues/queues.js';
import type { DeliveryCause } from '../queues/webhooks.js';
import type { DeliveryRow } from './deliveries.js';

/**
 * Which job owns a delivery: one job at a time may attempt it, named on its row (`job_id`). A
 * delivery put back in line (a manual retry, the relay's resume of held deliveries, the sweep)
 * gets a new job, and any older job of it that comes back ends without sending.
 */

/** A delivery put back in line, with what its next job id is made of. */
export interface RequeuedDelivery {
  id: string;
  endpointId: string;
  eventId: string;
  enqueueCount: number;
}

const requeued = (row: Pick<DeliveryRow, 'id' | 'endpoint_id' | 'event_id' | 'enqueue_count'>) => ({
  id: row.id,
  endpointId: row.endpoint_id,
  eventId: row.event_id,
  enqueueCount: row.enqueue_count,
});

/**
 * Puts deliveries back in line for another try. A delivered delivery stays delivered (the database
 * keeps it so); its new job sends it again all the same.
 */
export async function requeueDeliveries(db: Knex, ids: string[]): Promise<RequeuedDelivery[]> {
  if (ids.length === 0) return [];
  const rows = await db<DeliveryRow>('webhook_deliveries')
    .whereIn('id', ids)
    .update({
      status: 'pending',
      enqueue_count: db.raw('enqueue_count + 1'),
      updated_at: db.fn.now(),
    } as never)
    .returning(['id', 'endpoint_id', 'event_id', 'enqueue_count']);
  return rows.map(requeued);
}

/** Held deliveries of enabled endpoints back to pending, oldest event first (rows others hold are skipped). */
export async function takeHeldDeliveries(db: Knex, limit: number): Promise<RequeuedDelivery[]> {
  const { rows } = await db.raw<{ rows: DeliveryRow[] }>(
    `update webhook_deliveries d
     set status = 'pending', enqueue_count = d.enqueue_count + 1, updated_at = now()
     where d.id in (
       select h.id from webhook_deliveries h
       join webhook_endpoints w on w.id = h.endpoint_id and w.status = 'enabled'
       where h.status = 'held'
       order by h.event_seq
       limit ?
       for update of h skip locked)
     returning d.id, d.endpoint_id, d.event_id, d.enqueue_count`,
    [limit],
  );
  return rows.map(requeued);
}

/**
 * Gives each requeued delivery a new job, named by (event, endpoint, cause, enqueue count), and
 * records it on the row as the one job that may attempt it now (any older job of the delivery that
 * comes back ends without sending). In the caller's transaction, which adds the jobs before it
 * commits: a failed add leaves the deliveries as they were. Resolves with the job ids.
 */
export async function queueDeliveryJobs(
  db: Knex,
  deps: { queues: Queues; config: Config },
  deliveries: RequeuedDelivery[],
  cause: DeliveryCause,
  meta?: JobMeta,
): Promise<string[]> {
  if (deliveries.length === 0) return [];
  const followUps = deliveries.map(
    (d): FollowUp => ({
      kind: 'delivery',
      payload: { eventId: d.eventId, endpointId: d.endpointId, cause },
      key: String(d.enqueueCount),
      meta,
    }),
  );
  await db.raw(
    `update webhook_deliveries d set job_id = j.job_id
     from unnest(?::uuid[], ?::text[]) as j (id, job_id) where d.id = j.id`,
    [deliveries.map((d) => d.id), followUps.map(followUpJobId)],
  );
  return addFollowUps(deps, followUps);
}
