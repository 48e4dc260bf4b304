import type { Queue } from 'bullmq';
import type { Knex } from 'knex';
import type { Config } from '../config.js';
import type { RedisClient } from '../connections.js';
import type { Logger } from '../log.js';
import type { Queues } from '../queues/queues.js';
import { queueDeliveryJobs, requeueDeliveries } from './delivery-jobs.js';

/**
 * The delivery sweep: finds pending deliveries whose job is gone from Redis (Redis lost or
 * flushed, a job failed as stalled, an enqueue that never happened) and enqueues them again.
 *
 * A delivery is swept only when no attempt can still be in flight: its last attempt started more
 * than WEBHOOK_SWEEP_AFTER_MS ago (longer than an attempt can take) and its job (`job_id`) is not
 * waiting, delayed or active in Redis. The new job's id is derived from (event, endpoint, sweep,
 * enqueue count) and recorded on the row in the transaction that adds it, so a sweep that runs
 * twice adds it once, and any older job of the delivery that comes back ends without sending.
 */

const pageSize = 500;

interface SweepDeps {
  db: Knex;
  redis: RedisClient;
  queues: Queues;
  config: Config;
  log: Logger;
}

interface Candidate {
  id: string;
  endpoint_id: string;
  event_id: string;
  job_id: string | null;
}

/** Whether each job is still to run (waiting, delayed, active): its hash exists and it has not finished. */
async function liveJobs(redis: RedisClient, queue: Queue, jobIds: (string | null)[]): Promise<boolean[]> {
  const pipeline = redis.pipeline();
  for (const id of jobIds) if (id) pipeline.hmget(queue.toKey(id), 'timestamp', 'finishedOn');
  const answers = (await pipeline.exec()) ?? [];
  let next = 0;
  return jobIds.map((id) => {
    if (!id) return false;
    const [error, fields] = answers[next++]!;
    if (error) throw error;
    const [timestamp, finishedOn] = fields as (string | null)[];
    return timestamp !== null && finishedOn === null;
  });
}

export async function sweepDeliveries(deps: SweepDeps): Promise<{ checked: number; requeued: number }> {
  const { db, config } = deps;
  const quietFor = db.raw(`now() - make_interval(secs => ?)`, [config.WEBHOOK_SWEEP_AFTER_MS / 1000]);
  let after = '00000000-0000-0000-0000-000000000000';
  const totals = { checked: 0, requeued: 0 };
  for (;;) {
    const page = (await db('webhook_deliveries')
      .where({ status: 'pending' })
      .andWhere('id', '>', after)
      .andWhere((w) => w.whereNull('attempt_started_at').orWhere('attempt_started_at', '<', quietFor))
      .orderBy('id')
      .limit(pageSize)
      .select('id', 'endpoint_id', 'event_id', 'job_id')) as Candidate[];
    if (page.length === 0) return totals;
    after = page[page.length - 1]!.id;
    totals.checked += page.length;
    const live = await liveJobs(
      deps.redis,
      deps.queues.webhooks,
      page.map((c) => c.job_id),
    );
    const lost = page.filter((_, i) => !live[i]);
    if (lost.length > 0) totals.requeued += await requeueLost(deps, lost, quietFor);
    if (page.length < pageSize) return totals;
  }
}

/** Re-enqueues the lost deliveries that are still as the scan saw them (locked, re-checked). */
async function requeueLost(deps: SweepDeps, lost: Candidate[], quietFor: Knex.Raw): Promise<number> {
  return deps.db.transaction(async (trx) => {
    const rows = (await trx('webhook_deliveries')
      .whereIn(
        'id',
        lost.map((c) => c.id),
      )
      .andWhere({ status: 'pending' })
      .andWhere((w) => w.whereNull('attempt_started_at').orWhere('attempt_started_at', '<', quietFor))
      .forUpdate()
      .skipLocked()
      .select('id', 'job_id')) as Pick<Candidate, 'id' | 'job_id'>[];
    const scanned = new Map(lost.map((c) => [c.id, c.job_id]));
    // A retry or replay that took the delivery over since the scan has a live job of its own.
    const unchanged = rows.filter((row) => scanned.get(row.id) === row.job_id);
    if (unchanged.length === 0) return 0;
    const deliveries = await requeueDeliveries(
      trx,
      unchanged.map((row) => row.id),
    );
    await queueDeliveryJobs(trx, deps, deliveries, 'sweep');
    deps.log.warn(
      { deliveries: deliveries.length },
      'pending deliveries had lost their jobs: enqueued again',
    );
    return deliveries.length;
  });
}
