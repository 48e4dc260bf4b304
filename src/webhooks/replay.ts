import type { Knex } from 'knex';
import type { Config } from '../config.js';
import { DomainError } from '../errors/domain-error.js';
import { readEventsBetween } from '../events/event-log.js';
import { addFollowUps, type FollowUp, followUpJobId } from '../queues/follow-ups.js';
import type { PayloadOf } from '../queues/job.js';
import type { Queues } from '../queues/queues.js';
import type { webhookJobs } from '../queues/webhooks.js';
import { getEndpointRow } from './endpoints.js';
import { routes } from './relay.js';

/**
 * Queues again an endpoint's deliveries of every event of a time range it subscribes to (from any
 * time: a replay also reaches events from before the endpoint was created). Each delivery is
 * taken over by a job whose id carries the replay job's id, so a retried replay adds each once.
 */
export async function replayDeliveries(
  deps: { db: Knex; queues: Queues; config: Config },
  replay: { jobId: string; actor: string },
  payload: PayloadOf<typeof webhookJobs.replay>,
): Promise<{ events: number }> {
  const { db } = deps;
  const endpoint = await getEndpointRow(db, payload.endpointId);
  if (!endpoint) throw new DomainError('not_found', `Webhook endpoint ${payload.endpointId} does not exist`);
  let after = 0;
  let count = 0;
  for (;;) {
    const events = await readEventsBetween(db, {
      after,
      since: new Date(payload.since),
      until: payload.until ? new Date(payload.until) : undefined,
      limit: 500,
      types: payload.types,
    });
    if (events.length === 0) break;
    after = events[events.length - 1]!.seq;
    const wanted = events.filter((e) =>
      routes(
        { ...endpoint, created_seq: 0 },
        { ...e, aggregate_type: e.aggregate.type, aggregate_id: e.aggregate.id },
      ),
    );
    if (wanted.length === 0) continue;
    const followUps = wanted.map(
      (e): FollowUp => ({
        kind: 'delivery',
        payload: { eventId: e.id, endpointId: endpoint.id, cause: 'replay' },
        key: replay.jobId,
        meta: { actor: replay.actor },
      }),
    );
    await db.transaction(async (trx) => {
      await trx('webhook_deliveries')
        .insert(
          wanted.map((e, i) => ({
            endpoint_id: endpoint.id,
            event_id: e.id,
            event_seq: e.seq,
            event_type: e.type,
            job_id: followUpJobId(followUps[i]!),
          })),
        )
        .onConflict(['endpoint_id', 'event_id'])
        .merge({
          status: 'pending',
          enqueue_count: trx.raw('webhook_deliveries.enqueue_count + 1'),
          job_id: trx.raw('excluded.job_id'),
          updated_at: trx.fn.now(),
        } as never);
      await addFollowUps(deps, followUps);
    });
    count += wanted.length;
  }
  return { events: count };
}
