import { z } from 'zod';
import type { Config } from '../config.js';
import { defineJob } from './job.js';

/** How long applied-job records are kept: twice the job retention, so no retry of a job can outlive its record. */
export const appliedJobsRetentionSeconds = (config: Pick<Config, 'JOB_RETENTION_SECONDS'>) =>
  2 * config.JOB_RETENTION_SECONDS;

export const maintenanceJobs = {
  pruneAppliedJobs: defineJob<{ deleted: number }>()({
    name: 'maintenance.prune-applied-jobs',
    queue: 'maintenance',
    payload: z.object({
      /** Older records are deleted: no retry of a job can arrive after its job is gone from Redis. */
      olderThanSeconds: z.number().int().min(60),
    }),
    options: { attempts: 3 },
  }),
  relayOutbox: defineJob<{ events: number; deliveries: number; resumed: number }>()({
    name: 'maintenance.relay-outbox',
    queue: 'maintenance',
    payload: z.object({
      /** One run relays batches until caught up or this time is spent; the next run goes on. */
      budgetMs: z.number().int().min(100).max(60_000).default(2000),
    }),
    // Runs every few hundred ms: keep no trail of them in Redis.
    options: { attempts: 1, removeOnComplete: true, removeOnFail: { count: 100 } },
  }),
  sweepDeliveries: defineJob<{ checked: number; requeued: number }>()({
    name: 'maintenance.sweep-deliveries',
    queue: 'maintenance',
    payload: z.object({}),
    options: { attempts: 1, removeOnComplete: true, removeOnFail: { count: 100 } },
  }),
  pruneEvents: defineJob<{ deleted: number; prunedThroughSeq: number }>()({
    name: 'maintenance.prune-events',
    queue: 'maintenance',
    payload: z.object({ olderThanDays: z.number().int().min(1) }),
    options: { attempts: 3 },
  }),
  warmCache: defineJob<{ skus: number; loads: number }>()({
    name: 'maintenance.warm-cache',
    queue: 'maintenance',
    payload: z.object({ top: z.number().int().min(0).max(100_000) }),
    options: { attempts: 1, removeOnComplete: { count: 10 }, removeOnFail: { count: 10 } },
  }),
  compactReports: defineJob<{ movements: number; skus: number; rebuilt: number; skipped: boolean }>()({
    name: 'maintenance.compact-reports',
    queue: 'maintenance',
    payload: z.object({ maxSkus: z.number().int().min(1).max(1_000_000).default(2000) }),
    // Every few seconds: the next run is the retry.
    options: { attempts: 1, removeOnComplete: true, removeOnFail: { count: 100 } },
  }),
  evaluateAlerts: defineJob<{ opened: number; resolved: number; open: number; skipped: boolean }>()({
    name: 'maintenance.evaluate-alerts',
    queue: 'maintenance',
    payload: z.object({}),
    // Every few seconds: the next run is the retry.
    options: { attempts: 1, removeOnComplete: true, removeOnFail: { count: 100 } },
  }),
};
