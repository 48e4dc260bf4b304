import { pruneAppliedJobs } from '../db/applied-jobs.js';
import { pruneEvents } from '../events/event-log.js';
import { runAlertEvaluation } from '../ops/alerts.js';
import { appliedJobsRetentionSeconds, refuseInsideRetention } from '../queues/maintenance.js';
import { readyJobs } from '../queues/queues.js';
import { pruneJobRuns } from '../reports/job-runs.js';
import { compactPaced } from '../reports/rollups.js';
import { sweepDeliveries } from '../webhooks/delivery-sweep.js';
import { relayOutbox } from '../webhooks/relay.js';
import type { QueueHandlers } from './processor.js';

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
  'maintenance.prune-job-runs': async ({ deps }, payload) => {
    refuseInsideRetention(
      payload.olderThanDays,
      deps.config.JOB_RUNS_RETENTION_DAYS,
      'days',
      'JOB_RUNS_RETENTION_DAYS',
    );
    return { deleted: await pruneJobRuns(deps.db, payload.olderThanDays) };
  },
  'maintenance.warm-cache': ({ deps }, payload) => deps.cache.warm(payload.top),
  'maintenance.evaluate-alerts': ({ deps }) => runAlertEvaluation(deps),
  'maintenance.compact-reports': ({ deps }, payload) =>
    compactPaced(deps.db, { ...payload, inventoryReady: () => readyJobs(deps.queues.inventory) }),
} satisfies QueueHandlers<'maintenance'>;
