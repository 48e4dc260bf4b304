import type { Config } from '../config.js';
import { pruneAppliedJobs } from '../db/applied-jobs.js';
import { DomainError } from '../errors.js';
import { pruneEvents } from '../events/event-log.js';
import { inventoryJobs } from '../queues/inventory.js';
import { appliedJobsRetentionSeconds, maintenanceJobs } from '../queues/maintenance.js';
import type { Queues } from '../queues/queues.js';
import { relayOutbox } from './outbox-relay.js';
import type { QueueHandlers } from './processor.js';

/**
 * Whoever enqueued a prune (the scheduler, or someone with queue access), it never deletes inside
 * the configured retention.
 */
function refuseInsideRetention(asked: number, retained: number, unit: string, setting: string): void {
  if (asked < retained) {
    throw new DomainError(
      'inside_retention',
      `Refusing to prune records younger than the configured retention (${retained} ${unit}, ${setting})`,
      { asked, retained, unit },
    );
  }
}

export const maintenanceHandlers = {
  'maintenance.prune-applied-jobs': async ({ deps }, payload) => {
    const retained = appliedJobsRetentionSeconds(deps.config);
    refuseInsideRetention(payload.olderThanSeconds, retained, 'seconds', '2 x JOB_RETENTION_SECONDS');
    return { deleted: await pruneAppliedJobs(deps.db, payload.olderThanSeconds) };
  },
  'maintenance.relay-outbox': ({ deps }, payload) => relayOutbox(deps, payload.budgetMs),
  'maintenance.prune-events': async ({ deps }, payload) => {
    refuseInsideRetention(
      payload.olderThanDays,
      deps.config.EVENT_RETENTION_DAYS,
      'days',
      'EVENT_RETENTION_DAYS',
    );
    return pruneEvents(deps.db, payload);
  },
} satisfies QueueHandlers<'maintenance'>;

/** Reservation expiry, upserted by every process that runs the inventory queue (idempotent, as above). */
export async function registerInventorySchedulers(queues: Queues, config: Config): Promise<void> {
  const expire = inventoryJobs.expireReservations;
  await queues.inventory.upsertJobScheduler(
    'expire-reservations',
    { every: config.RESERVATION_EXPIRY_INTERVAL_MS },
    {
      name: expire.name,
      data: { payload: { limit: config.RESERVATION_EXPIRY_BATCH }, meta: { actor: 'system' } },
      // A run leaves nothing worth keeping (its events record what expired), so it removes itself.
      // Not `{ count }` or `{ age }`: BullMQ applies those to the whole queue's finished jobs.
      opts: { ...expire.options, removeOnComplete: true },
    },
  );
}

/**
 * Repeatable work, declared in this one place and upserted by the processes that run the
 * maintenance queue. Upserting is idempotent: restarts and several such processes keep one
 * scheduler per id.
 */
export async function registerSchedulers(queues: Queues, config: Config): Promise<void> {
  const prune = maintenanceJobs.pruneAppliedJobs;
  await queues.maintenance.upsertJobScheduler(
    'prune-applied-jobs',
    { every: 60 * 60 * 1000 },
    {
      name: prune.name,
      // Twice the job retention: by then no retry of those jobs can still arrive.
      data: { payload: { olderThanSeconds: appliedJobsRetentionSeconds(config) }, meta: { actor: 'system' } },
      opts: prune.options,
    },
  );
  const relay = maintenanceJobs.relayOutbox;
  await queues.maintenance.upsertJobScheduler(
    'relay-outbox',
    { every: config.WEBHOOK_RELAY_INTERVAL_MS },
    {
      name: relay.name,
      data: { payload: { budgetMs: 2000 }, meta: { actor: 'system' } },
      opts: relay.options,
    },
  );
  const pruneLog = maintenanceJobs.pruneEvents;
  await queues.maintenance.upsertJobScheduler(
    'prune-events',
    { every: 60 * 60 * 1000 },
    {
      name: pruneLog.name,
      data: { payload: { olderThanDays: config.EVENT_RETENTION_DAYS }, meta: { actor: 'system' } },
      opts: pruneLog.options,
    },
  );
}
