import { DelayedError, type Job, type Processor, UnrecoverableError } from 'bullmq';
import { cacheChangesOf } from '../cache/job-changes.js';
import type { ReadCache } from '../cache/read-cache.js';
import type { Config } from '../config.js';
import type { RedisClient } from '../connections.js';
import type { Db } from '../db/knex.js';
import { DomainError, failedReasonOf } from '../errors/domain-error.js';
import type { Logger } from '../log.js';
import { recordFailure } from '../ops/failure-counts.js';
import type { Metrics } from '../ops/metrics.js';
import { findJob, type JobNamed, type JobNamesOf } from '../queues/catalog.js';
import { addFollowUps, followUpsAfter } from '../queues/follow-ups.js';
import {
  type AnyJob,
  isLastAttempt,
  type JobData,
  type JobMeta,
  type PayloadOf,
  type QueueName,
  type ResultOf,
} from '../queues/job.js';
import type { Queues } from '../queues/queues.js';
import { redisKeys } from '../redis-keys.js';
import type { JobRunLog } from '../reports/job-runs.js';
import type { SecretBox } from '../secrets.js';

export interface WorkerDeps {
  config: Config;
  log: Logger;
  db: Db;
  /** Worker-role connection (retries forever). */
  redis: RedisClient;
  /** For follow-up jobs and schedulers. */
  queues: Queues;
  /** Seals and opens secrets at rest (src/secrets.ts). */
  secrets: SecretBox;
  /** Invalidated after each job's commit; warmed by the maintenance queue. */
  cache: ReadCache;
  metrics: Metrics;
}

export interface JobContext {
  deps: WorkerDeps;
  job: Job<JobData>;
  meta: JobMeta;
  log: Logger;
}

export type Handler<J extends AnyJob> = (ctx: JobContext, payload: PayloadOf<J>) => Promise<ResultOf<J>>;

/** Every job of a queue mapped to its handler: a job without a handler is a compile error. */
export type QueueHandlers<Q extends QueueName> = { [N in JobNamesOf<Q>]: Handler<JobNamed<N>> };

/**
 * What BullMQ stores for a job that broke a domain rule: `failedReason` carries the code, message
 * and details (`failedReasonOf`: the status API reads the code there, written with the failure
 * itself), and no stack trace (a broken rule is an answer, not a crash), so Bull Board shows the
 * rule, not our call stack. Still an UnrecoverableError: never retried. Crashes keep theirs.
 */
export function domainFailureForQueue(error: DomainError): UnrecoverableError {
  const failure = new UnrecoverableError(
    failedReasonOf({ code: error.code, message: error.message, details: error.details }),
  );
  failure.name = 'DomainError';
  // BullMQ appends `stack` to the job's stacktrace when it is set.
  failure.stack = '';
  return failure;
}

/**
 * Wraps a queue's handlers into a BullMQ processor: re-parses the payload (it may have been queued
 * by older code), logs with the request id carried from the API, and hands a domain error to
 * BullMQ as the failure it stores with its code (see domainFailureForQueue), never retried. Any other
 * error is rethrown for retry.
 * After the handler's transaction has committed and before the job completes, its follow-up jobs
 * are queued (src/queues/follow-ups.ts) and the read cache forgets what the job changed (a failure
 * there fails the attempt: its retry is a no-op that queues and invalidates again). Durations,
 * waits and outcomes go to the process's metrics, and each attempt to `runs` (the jobs report).
 */
export function createProcessor<Q extends QueueName>(
  deps: WorkerDeps,
  queue: Q,
  handlers: QueueHandlers<Q>,
  runs: JobRunLog,
): Processor<JobData> {
  const byName = handlers as unknown as Record<string, Handler<AnyJob>>;
  return async (job) => {
    const meta: JobMeta = job.data.meta ?? { actor: 'unknown' };
    const log = deps.log.child({
      queue,
      job: job.name,
      jobId: job.id,
      attempt: job.attemptsMade + 1,
      requestId: meta.requestId,
    });
    const started = performance.now();
    const labels = { queue, job: job.name };
    let waitMs: number | null = null;
    if (job.attemptsMade === 0 && job.processedOn) {
      const dueAt = job.timestamp + (job.delay ?? 0);
      waitMs = Math.max(0, job.processedOn - dueAt);
      deps.metrics.jobWait.observe(labels, waitMs / 1000);
    }
    const recordRun = (outcome: 'completed' | 'failed' | 'retried', errorCode: string | null = null) =>
      runs.record({
        queue,
        name: job.name,
        jobId: job.id ?? null,
        attempt: job.attemptsMade + 1,
        outcome,
        errorCode,
        waitMs,
        runMs: Math.round(performance.now() - started),
        finishedAt: new Date(),
      });
    try {
      const definition = findJob(job.name);
      const handler = byName[job.name];
      if (!definition || definition.queue !== queue || !handler) {
        throw new DomainError('invalid_payload', `No handler for job ${job.name} on queue ${queue}`);
      }
      const parsed = definition.payload.safeParse(job.data.payload);
      if (!parsed.success) {
        throw new DomainError('invalid_payload', `Payload of ${job.name} does not match its schema`, {
          issues: parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
        });
      }
      const result = await handler({ deps, job, meta, log }, parsed.data);
      await addFollowUps(deps, followUpsAfter(deps.config, job.name, parsed.data, result));
      const changes = await cacheChangesOf(deps.db, job.name, parsed.data, result);
      if (changes) await deps.cache.invalidate(changes);
      deps.metrics.jobDuration.observe(labels, (performance.now() - started) / 1000);
      deps.metrics.jobsCompleted.inc(labels);
      recordRun('completed');
      // Scheduled runs (relay, expiry, pruning) come every few hundred ms: keep them out of info logs.
      const level = job.repeatJobKey ? 'debug' : 'info';
      log[level]({ ms: Math.round(performance.now() - started) }, 'job completed');
      return result;
    } catch (error) {
      // DelayedError is no failure: the handler moved its job to a later time (a rate limit).
      if (error instanceof DelayedError) throw error;
      deps.metrics.jobDuration.observe(labels, (performance.now() - started) / 1000);
      const final = await countFailure(deps, job, queue, error);
      recordRun(final ? 'failed' : 'retried', error instanceof DomainError ? error.code : null);
      if (error instanceof DomainError) {
        log.info(
          { code: error.code, ms: Math.round(performance.now() - started) },
          'job failed a domain rule',
        );
        throw domainFailureForQueue(error);
      }
      log.warn({ err: error }, 'job attempt failed; it is retried while attempts remain');
      throw error;
    }
  };
}

/**
 * Metrics of a failed attempt; a failure for good also counts toward the job_failures alert.
 * Returns whether the failure is for good.
 */
async function countFailure(
  deps: WorkerDeps,
  job: Job<JobData>,
  queue: QueueName,
  error: unknown,
): Promise<boolean> {
  const final = error instanceof DomainError || error instanceof UnrecoverableError || isLastAttempt(job);
  const labels = { queue, job: job.name, code: error instanceof DomainError ? error.code : 'error' };
  if (!final) {
    deps.metrics.jobRetries.inc(labels);
    return false;
  }
  deps.metrics.jobsFailed.inc(labels);
  // Counted before the job is failed, so whoever sees it failed sees it counted. Best effort:
  // a lost count (Redis away) only makes the alert a little late.
  await recordFailure(deps.redis, redisKeys(deps.config).ops, queue).catch(() => undefined);
  return true;
}
