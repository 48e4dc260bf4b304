import { horizonFor } from '../events/horizon.js';
import { matchesType } from '../events/type-patterns.js';
import { deliveryJob, deliveryJobId } from '../queues/webhooks.js';
import { assignDeliveryJobs } from '../webhooks/deliveries.js';
import { attemptsFor } from '../webhooks/retry-schedule.js';
import type { WorkerDeps } from './processor.js';

/**
 * The outbox relay: turns events into webhook delivery jobs, one per event and matching endpoint.
 * It reads the log in seq order below the stable horizon (so it never skips an event) from its
 * cursor in `outbox_cursors`, and in one transaction per batch creates the delivery rows, adds
 * their jobs and moves the cursor. Jobs are added before the commit, under ids derived from
 * (event, endpoint): if the commit is lost, the next run adds the same jobs again and BullMQ keeps
 * one. A delivery job that starts before the commit waits on the uncommitted delivery row.
 * Concurrent runs (several worker processes) skip a cursor another run has locked.
 */

const batchSize = 1000;
const resumeBatchSize = 500;

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
  deps: WorkerDeps,
  budgetMs: number,
): Promise<{ events: number; deliveries: number; resumed: number }> {
  const deadline = Date.now() + budgetMs;
  const horizon = horizonFor(deps.db);
  const totals = { events: 0, deliveries: 0, resumed: await resumeHeldDeliveries(deps) };
  while (Date.now() < deadline) {
    const proven = await horizon.refresh(Math.max(100, deadline - Date.now()));
    const batch = await relayBatch(deps, proven);
    totals.events += batch.events;
    totals.deliveries += batch.deliveries;
    if (!batch.more) break;
  }
  return totals;
}

async function relayBatch(
  deps: WorkerDeps,
  horizon: number,
): Promise<{ events: number; deliveries: number; more: boolean }> {
  const attempts = attemptsFor({ schedule: deps.config.WEBHOOK_RETRY_SCHEDULE, jitter: 0 });
  return deps.db.transaction(async (trx) => {
    const cursor = await trx('outbox_cursors')
      .where({ name: 'webhooks' })
      .forUpdate()
      .skipLocked()
      .first('position');
    if (!cursor || cursor.position >= horizon) return { events: 0, deliveries: 0, more: false };
    const events = (await trx('events')
      .select('seq', 'id', 'type', 'aggregate_type', 'aggregate_id')
      .where('seq', '>', cursor.position)
      .andWhere('seq', '<=', horizon)
      .orderBy('seq')
      .limit(batchSize)) as EventHead[];
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
            job_id: pending ? deliveryJobId(event.id, endpoint.id, 'new') : null,
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
      const jobs = inserted
        .filter((row) => row.status === 'pending')
        .map((row) =>
          deliveryJob({ eventId: row.event_id, endpointId: row.endpoint_id, cause: 'new' }, attempts),
        );
      if (jobs.length > 0) await deps.queues.webhooks.addBulk(jobs);
      queued += jobs.length;
    }
    const full = events.length === batchSize;
    const position = full ? events[events.length - 1]!.seq : horizon;
    await trx('outbox_cursors').where({ name: 'webhooks' }).update({ position, updated_at: trx.fn.now() });
    return { events: events.length, deliveries: queued, more: full };
  });
}

/** Held deliveries of endpoints that are enabled again go back in line, oldest event first. */
async function resumeHeldDeliveries(deps: WorkerDeps): Promise<number> {
  const attempts = attemptsFor({ schedule: deps.config.WEBHOOK_RETRY_SCHEDULE, jitter: 0 });
  let resumed = 0;
  for (;;) {
    const count = await deps.db.transaction(async (trx) => {
      const { rows } = await trx.raw<{
        rows: { id: string; endpoint_id: string; event_id: string; enqueue_count: number }[];
      }>(
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
        [resumeBatchSize],
      );
      if (rows.length > 0) {
        const jobs = rows.map((row) =>
          deliveryJob(
            {
              eventId: row.event_id,
              endpointId: row.endpoint_id,
              cause: 'resume',
              discriminator: String(row.enqueue_count),
            },
            attempts,
          ),
        );
        await assignDeliveryJobs(
          trx,
          rows.map((row, i) => ({ id: row.id, jobId: jobs[i]!.opts.jobId! })),
        );
        await deps.queues.webhooks.addBulk(jobs);
      }
      return rows.length;
    });
    resumed += count;
    if (count < resumeBatchSize) return resumed;
  }
}
