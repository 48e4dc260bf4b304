import { z } from 'zod';
import type { Config } from '../config.js';
import { DomainError } from '../errors/domain-error.js';
import type { CompactionRun } from '../reports/rollups.js';
import { defineJob, defineScheduler, type Scheduler } from './job.js';

/** How long applied-job records are kept: twice the job retention, so no retry of a job can outlive its record. */
export const appliedJobsRetentionSeconds = (config: Pick<Config, 'JOB_RETENTION_SECONDS'>) =>
  2 * config.JOB_RETENTION_SECONDS;

/**
 * Whoever enqueued a prune (the scheduler, or someone with queue access), it never deletes inside
 * the configured retention.
 */
export function refuseInsideRetention(asked: number, retained: number, unit: string, setting: string): void {
  if (asked < retained) {
    throw new DomainError(
      'inside_retention',
      `Refusing to prune records younger than the configured retention (${retained} ${unit}, ${setting})`,
      { asked, retained, unit },
    );
  }
}

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
  pruneJobRuns: defineJob<{ deleted: number }>()({
    name: 'maintenance.prune-job-runs',
    queue: 'maintenance',
    payload: z.object({ olderThanDays: z.number().int().min(1) }),
    options: { attempts: 3 },
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
  compactReports: defineJob<CompactionRun>()({
    name: 'maintenance.compact-reports',
    queue: 'maintenance',
    // Defaults for a scheduler template written before the pacing settings.
    payload: z.object({
      maxSkus: z.number().int().min(1).max(1_000_000).default(2000),
      yieldAtReady: z.number().int().min(0).max(1_000_000).default(100),
      maxLagMs: z.number().int().min(1000).max(3_600_000).default(30_000),
    }),
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

const hourMs = 60 * 60 * 1000;

export const maintenanceSchedulers = (
  config: Pick<
    Config,
    | 'JOB_RETENTION_SECONDS'
    | 'WEBHOOK_RELAY_INTERVAL_MS'
    | 'WEBHOOK_SWEEP_INTERVAL_MS'
    | 'CACHE_WARM_INTERVAL'
    | 'CACHE_WARM_TOP'
    | 'ALERT_EVALUATION_INTERVAL'
    | 'EVENT_RETENTION_DAYS'
    | 'JOB_RUNS_RETENTION_DAYS'
    | 'REPORTS_COMPACT_INTERVAL_MS'
    | 'REPORTS_COMPACT_MAX_SKUS'
    | 'REPORTS_COMPACT_YIELD_READY'
    | 'REPORTS_COMPACT_MAX_LAG_MS'
  >,
): Scheduler[] => [
  defineScheduler(maintenanceJobs.pruneAppliedJobs, {
    id: 'prune-applied-jobs',
    every: hourMs,
    // Twice the job retention: by then no retry of those jobs can still arrive.
    payload: { olderThanSeconds: appliedJobsRetentionSeconds(config) },
  }),
  defineScheduler(maintenanceJobs.relayOutbox, {
    id: 'relay-outbox',
    every: config.WEBHOOK_RELAY_INTERVAL_MS,
    payload: { budgetMs: 2000 },
  }),
  defineScheduler(maintenanceJobs.sweepDeliveries, {
    id: 'sweep-deliveries',
    every: config.WEBHOOK_SWEEP_INTERVAL_MS,
    payload: {},
  }),
  defineScheduler(maintenanceJobs.warmCache, {
    id: 'warm-cache',
    every: config.CACHE_WARM_INTERVAL,
    payload: { top: config.CACHE_WARM_TOP },
    runAtStart: true,
  }),
  // One evaluator across processes: the scheduler makes one job per interval, whoever runs it.
  defineScheduler(maintenanceJobs.evaluateAlerts, {
    id: 'evaluate-alerts',
    every: config.ALERT_EVALUATION_INTERVAL,
    payload: {},
  }),
  // Folds new ledger rows into the report rollups (src/reports/rollups.ts).
  defineScheduler(maintenanceJobs.compactReports, {
    id: 'compact-reports',
    every: config.REPORTS_COMPACT_INTERVAL_MS,
    payload: {
      maxSkus: config.REPORTS_COMPACT_MAX_SKUS,
      yieldAtReady: config.REPORTS_COMPACT_YIELD_READY,
      maxLagMs: config.REPORTS_COMPACT_MAX_LAG_MS,
    },
  }),
  // Keeps the jobs report's record (job_runs) bounded.
  defineScheduler(maintenanceJobs.pruneJobRuns, {
    id: 'prune-job-runs',
    every: hourMs,
    payload: { olderThanDays: config.JOB_RUNS_RETENTION_DAYS },
  }),
  defineScheduler(maintenanceJobs.pruneEvents, {
    id: 'prune-events',
    every: hourMs,
    payload: { olderThanDays: config.EVENT_RETENTION_DAYS },
  }),
];
