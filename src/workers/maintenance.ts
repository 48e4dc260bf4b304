import type { JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../config.js';
import { pruneAppliedJobs } from '../db/applied-jobs.js';
import { DomainError } from '../errors/domain-error.js';
import { pruneEvents } from '../events/event-log.js';
import type { Logger } from '../log.js';
import { runAlertEvaluation } from '../ops/alerts.js';
import { inventoryJobs } from '../queues/inventory.js';
import type { JobData, QueueName } from '../queues/job.js';
import { appliedJobsRetentionSeconds, maintenanceJobs } from '../queues/maintenance.js';
import type { Queues } from '../queues/queues.js';
import { reorderJobs } from '../queues/reorder.js';
import { compactRollups } from '../reports/rollups.js';
import { sweepDeliveries } from './delivery-sweep.js';
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
  'maintenance.sweep-deliveries': ({ deps }) => sweepDeliveries(deps),
  'maintenance.prune-events': async ({ deps }, payload) => {
    refuseInsideRetention(
      payload.olderThanDays,
      deps.config.EVENT_RETENTION_DAYS,
      'days',
      'EVENT_RETENTION_DAYS',
    );
    return pruneEvents(deps.db, payload);
  },
  'maintenance.warm-cache': ({ deps }, payload) => deps.cache.warm(payload.top),
  'maintenance.evaluate-alerts': ({ deps }) => runAlertEvaluation(deps),
  'maintenance.compact-reports': ({ deps }, payload) => compactRollups(deps.db, payload),
} satisfies QueueHandlers<'maintenance'>;

/** One BullMQ job scheduler: repeatable work, run by the processes that run its queue. */
interface Scheduler {
  queue: QueueName;
  id: string;
  every: number;
  name: string;
  data: JobData;
  opts?: JobsOptions;
}

const system = { actor: 'system' };

/** Every job scheduler of the platform, declared in this one place. */
export function schedulers(config: Config): Scheduler[] {
  const expire = inventoryJobs.expireReservations;
  return [
    {
      queue: 'inventory',
      id: 'expire-reservations',
      every: config.RESERVATION_EXPIRY_INTERVAL_MS,
      name: expire.name,
      data: { payload: { limit: config.RESERVATION_EXPIRY_BATCH }, meta: system },
      // A run leaves nothing worth keeping (its events record what expired), so it removes itself.
      // Not `{ count }` or `{ age }`: BullMQ applies those to the whole queue's finished jobs.
      opts: { ...expire.options, removeOnComplete: true },
    },
    {
      queue: 'maintenance',
      id: 'prune-applied-jobs',
      every: 60 * 60 * 1000,
      name: maintenanceJobs.pruneAppliedJobs.name,
      // Twice the job retention: by then no retry of those jobs can still arrive.
      data: { payload: { olderThanSeconds: appliedJobsRetentionSeconds(config) }, meta: system },
      opts: maintenanceJobs.pruneAppliedJobs.options,
    },
    {
      queue: 'maintenance',
      id: 'relay-outbox',
      every: config.WEBHOOK_RELAY_INTERVAL_MS,
      name: maintenanceJobs.relayOutbox.name,
      data: { payload: { budgetMs: 2000 }, meta: system },
      opts: maintenanceJobs.relayOutbox.options,
    },
    {
      queue: 'maintenance',
      id: 'sweep-deliveries',
      every: config.WEBHOOK_SWEEP_INTERVAL_MS,
      name: maintenanceJobs.sweepDeliveries.name,
      data: { payload: {}, meta: system },
      opts: maintenanceJobs.sweepDeliveries.options,
    },
    {
      queue: 'maintenance',
      id: 'warm-cache',
      every: config.CACHE_WARM_INTERVAL,
      name: maintenanceJobs.warmCache.name,
      data: { payload: { top: config.CACHE_WARM_TOP }, meta: system },
      opts: maintenanceJobs.warmCache.options,
    },
    // One evaluator across processes: the scheduler makes one job per interval, whoever runs it.
    {
      queue: 'maintenance',
      id: 'evaluate-alerts',
      every: config.ALERT_EVALUATION_INTERVAL,
      name: maintenanceJobs.evaluateAlerts.name,
      data: { payload: {}, meta: system },
      opts: maintenanceJobs.evaluateAlerts.options,
    },
    {
      queue: 'maintenance',
      id: 'compact-reports',
      every: config.REPORTS_COMPACT_INTERVAL_MS,
      name: maintenanceJobs.compactReports.name,
      data: { payload: { maxSkus: config.REPORTS_COMPACT_MAX_SKUS }, meta: system },
      opts: maintenanceJobs.compactReports.options,
    },
    {
      queue: 'reorder',
      id: 'reorder-scan',
      every: config.REORDER_SCAN_INTERVAL_MS,
      name: reorderJobs.scan.name,
      data: { payload: { limit: 5000 }, meta: system },
      opts: reorderJobs.scan.options,
    },
    {
      queue: 'maintenance',
      id: 'prune-events',
      every: 60 * 60 * 1000,
      name: maintenanceJobs.pruneEvents.name,
      data: { payload: { olderThanDays: config.EVENT_RETENTION_DAYS }, meta: system },
      opts: maintenanceJobs.pruneEvents.options,
    },
  ];
}

const upsert = (queues: Queues, s: Scheduler) =>
  queues[s.queue].upsertJobScheduler(s.id, { every: s.every }, { name: s.name, data: s.data, opts: s.opts });

/**
 * Upserts the schedulers of these queues, at worker start. Upserting is idempotent: restarts and
 * several such processes keep one scheduler per id (and a changed interval takes effect).
 */
export async function registerSchedulers(
  queues: Queues,
  config: Config,
  running: QueueName[],
): Promise<void> {
  for (const s of schedulers(config)) if (running.includes(s.queue)) await upsert(queues, s);
}

/** Re-creates the schedulers of these queues that Redis no longer has; returns their ids. */
export async function restoreMissingSchedulers(
  queues: Queues,
  config: Config,
  running: QueueName[],
): Promise<string[]> {
  const restored: string[] = [];
  for (const s of schedulers(config)) {
    if (!running.includes(s.queue) || (await queues[s.queue].getJobScheduler(s.id))) continue;
    await upsert(queues, s);
    restored.push(s.id);
  }
  return restored;
}

/**
 * Keeps the schedulers alive while the workers run: Redis may lose them (a restart without
 * persistence, a flush, a failover to an empty replica) and nothing else would bring them back
 * before the next deploy. Checks every SCHEDULER_CHECK_INTERVAL_MS and whenever the worker
 * connection is ready again after a reconnect. Returns the function that stops it.
 */
export function keepSchedulers(
  deps: { queues: Queues; config: Config; log: Logger; redis: Redis },
  running: QueueName[],
): () => void {
  const { queues, config, log, redis } = deps;
  let checking: Promise<void> | undefined;
  let stopped = false;
  const check = () => {
    if (stopped || checking) return;
    checking = restoreMissingSchedulers(queues, config, running)
      .then((restored) => {
        if (restored.length > 0)
          log.warn({ schedulers: restored }, 'job schedulers were missing: re-created');
      })
      // Redis is away: the next tick or the reconnect tries again.
      .catch((err: unknown) => log.debug({ err }, 'could not check the job schedulers'))
      .finally(() => {
        checking = undefined;
      });
  };
  const timer = setInterval(check, config.SCHEDULER_CHECK_INTERVAL_MS);
  timer.unref();
  redis.on('ready', check);
  return () => {
    stopped = true;
    clearInterval(timer);
    redis.off('ready', check);
  };
}

/** Warms the cache once when a worker starts (the scheduler's first run may be an interval away). */
export async function warmCacheAtStart(queues: Queues, config: Config): Promise<void> {
  const warm = maintenanceJobs.warmCache;
  await queues.maintenance.add(
    warm.name,
    { payload: { top: config.CACHE_WARM_TOP }, meta: { actor: 'system' } },
    warm.options,
  );
}
