import { hostname } from 'node:os';
import { DelayedError, type Job } from 'bullmq';
import type { Knex } from 'knex';
import type { Config } from '../config.js';
import type { RedisClient } from '../connections.js';
import { setJobContext } from '../db/job-context.js';
import { isServiceUnavailable, transactionRetried } from '../db/knex.js';
import { RetryLaterError } from '../errors/retry-later-error.js';
import { appendEvent } from '../events/outbox.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../ops/metrics.js';
import { postJson, type SendResult } from '../outbound/http.js';
import { recordRetryDelaysMs } from '../queues/backoff.js';
import { isLastAttempt, type JobData, type PayloadOf } from '../queues/job.js';
import type { DeliverResult, webhookJobs } from '../queues/webhooks.js';
import type { WebhookAttempt } from '../schemas/webhooks.js';
import type { SecretBox } from '../secrets.js';
import { closeBreaker, countFailedAttempt } from './breaker.js';
import {
  type DeliveryContext,
  ensureDelivery,
  findRecordedAttempt,
  loadDeliveryContext,
  markAttemptStarted,
  recordAttempt,
  setDeliveryStatus,
} from './deliveries.js';
import { disableEndpoint, signingSecrets } from './endpoints.js';
import { waitForRateSlot } from './rate-limit.js';
import { signatureHeaders } from './signing.js';

const workerName = `${hostname()}:${process.pid}`;

interface DeliveryDeps {
  db: Knex;
  config: Config;
  redis: RedisClient;
  secrets: SecretBox;
  metrics: Metrics;
}

type Attempt = Omit<WebhookAttempt, 'attempt'>;

/** An attempt as it is recorded, with the wait the receiver asked for (429 and 503 only). */
interface SentAttempt {
  attempt: Attempt;
  retryAfterMs?: number;
}

/**
 * A delivery job's data. `pendingAttempt`: an attempt this job made whose record failed; the next
 * run records it before anything else. (Compatibility: an optional field; a worker of the last
 * release ignores it and sends again, as at least once allows.)
 */
type DeliveryData = JobData & { pendingAttempt?: SentAttempt };

type Recorded = Awaited<ReturnType<typeof recordOutcome>>;

/**
 * One attempt of one delivery (event × endpoint), the POST outside any transaction:
 * 1. whether this job still owns a delivery to attempt (see `claimAttempt`);
 * 2. the endpoint's rate limit, then the signed POST;
 * 3. (transaction) the attempt recorded, the delivery moved on, the breaker told. A failure is
 *    thrown after it is recorded: BullMQ retries on the schedule (or the receiver's Retry-After),
 *    or fails the job when this was the last attempt (the delivery is `failed` and
 *    `webhook.delivery_exhausted` written by then).
 * Every attempt made is recorded: step 3 is tried again while Postgres is away
 * (`recordRetryDelaysMs`); if it still fails, the attempt is kept in the job's data and the job
 * comes back after JOB_BACKOFF_MS, within the same attempt, to record it and act on it as step 3
 * would have (a 2xx is delivered without a second POST).
 * Postgres away before the POST (the claim, or the record of a kept attempt) spends no attempt
 * either: the job comes back after JOB_BACKOFF_MS, not at the retry schedule's next step.
 * A delivery job runs ahead of fresh deliveries from its first run on (priority 0): whenever it
 * comes back (a retry, a rate-limit slot, a record to finish), it is due, not new.
 */
export async function deliver(
  deps: DeliveryDeps,
  job: Job<JobData>,
  log: Logger,
  payload: PayloadOf<typeof webhookJobs.deliver>,
): Promise<DeliverResult> {
  const { config, metrics } = deps;
  // The hash holds it as text.
  if (Number(job.priority) !== 0) await job.changePriority({ priority: 0 });
  const pending = (job.data as DeliveryData).pendingAttempt;
  let claimed: Awaited<ReturnType<typeof claimAttempt>>;
  try {
    if (pending) return await recordPending(deps, job, log, payload, pending);
    claimed = await claimAttempt(deps.db, job.id!, payload);
  } catch (error) {
    // Nothing was sent: Postgres being away is not a failed delivery attempt, and must not push
    // the next one a step down the retry schedule (30 s and more) once it is back.
    if (!isServiceUnavailable(error)) throw error;
    log.warn(
      { err: error },
      'Postgres is away before the attempt: the job comes back without spending an attempt',
    );
    return comeBackSoon(deps, job);
  }
  if ('outcome' in claimed) return claimed;

  const sendAt = await waitForRateSlot(
    deps.redis,
    config.QUEUE_PREFIX,
    job,
    claimed.endpoint.id,
    claimed.endpoint.rate_limit_per_second,
  );
  const { attempt, result } = await send(deps, claimed, job.id ?? null, sendAt);
  const status = result.statusCode;
  metrics.webhookAttempts.inc({ outcome: attempt.outcome });
  metrics.webhookAttemptDuration.observe({ outcome: attempt.outcome }, result.durationMs / 1000);
  const sent: SentAttempt = {
    attempt,
    ...(status === 429 || status === 503 ? { retryAfterMs: result.retryAfterMs } : {}),
  };

  let recorded: Recorded;
  try {
    recorded = await transactionRetried(
      deps.db,
      (trx, again) => record(trx, config, job, claimed, attempt, again),
      recordRetryDelaysMs,
    );
  } catch (error) {
    return keepForNextRun(deps, job, log, sent, error);
  }
  return settle(deps, job, log, claimed, sent, recorded);
}

/** Records the attempt in the caller's transaction, on behalf of the job. */
async function record(
  trx: Knex.Transaction,
  config: Config,
  job: Job<JobData>,
  context: DeliveryContext,
  attempt: Attempt,
  again: boolean,
): Promise<Recorded> {
  await setJobContext(trx, { actor: 'system', jobId: job.id });
  return recordOutcome(trx, config, context, attempt, isLastAttempt(job), again);
}

/**
 * The attempt could not be recorded: it is kept in the job's data and the job moved back to the
 * queue for JOB_BACKOFF_MS without spending an attempt (BullMQ's DelayedError), so that its next
 * run records it with the attempt number it was made under. If Redis is away too, the error is
 * thrown and the attempt is lost from the log (the delivery is sent again: at least once).
 */
async function keepForNextRun(
  deps: DeliveryDeps,
  job: Job<JobData>,
  log: Logger,
  sent: SentAttempt,
  error: unknown,
): Promise<never> {
  log.warn(
    { err: error, statusCode: sent.attempt.statusCode },
    'webhook attempt made but not recorded: kept in the job until its next run records it',
  );
  await job.updateData({ ...job.data, pendingAttempt: sent } as DeliveryData);
  return comeBackSoon(deps, job);
}

/** Moves the job back to the queue for JOB_BACKOFF_MS without spending one of its attempts. */
async function comeBackSoon(deps: DeliveryDeps, job: Job<JobData>): Promise<never> {
  await job.moveToDelayed(Date.now() + deps.config.JOB_BACKOFF_MS, job.token);
  throw new DelayedError();
}

/**
 * The next run of a job whose attempt was not recorded: records it (once, however often this
 * runs), then acts on it as the run that made it would have. No POST.
 */
async function recordPending(
  deps: DeliveryDeps,
  job: Job<JobData>,
  log: Logger,
  payload: PayloadOf<typeof webhookJobs.deliver>,
  pending: SentAttempt,
): Promise<DeliverResult> {
  const done = await deps.db.transaction(async (trx) => {
    const context = await loadDeliveryContext(trx, payload.endpointId, payload.eventId);
    // The endpoint was deleted meanwhile, with its deliveries and their history.
    if (!context) return undefined;
    return { context, recorded: await record(trx, deps.config, job, context, pending.attempt, true) };
  });
  const { pendingAttempt: _, ...data } = job.data as DeliveryData;
  await job.updateData(data);
  if (!done) return { deliveryId: null, outcome: 'skipped' };
  log.info({ statusCode: pending.attempt.statusCode }, 'webhook attempt of an earlier run recorded');
  return settle(deps, job, log, done.context, pending, done.recorded);
}

/** What a recorded attempt means for the job: its result, or a RetryLaterError for BullMQ to retry. */
function settle(
  deps: DeliveryDeps,
  job: Job<JobData>,
  log: Logger,
  { delivery, endpoint }: DeliveryContext,
  { attempt, retryAfterMs }: SentAttempt,
  recorded: Recorded,
): DeliverResult {
  const isLast = isLastAttempt(job);
  const answer = {
    deliveryId: delivery.id,
    attempt: recorded.attempt,
    ...(attempt.statusCode !== null ? { statusCode: attempt.statusCode } : {}),
  };
  if (recorded.outcome === 'already_delivered') return { ...answer, outcome: recorded.outcome };
  if (recorded.outcome === 'delivered' || recorded.outcome === 'gone' || isLast) {
    deps.metrics.webhookDeliveries.inc({
      outcome: recorded.outcome === 'failed' ? 'exhausted' : recorded.outcome,
    });
  }
  if (recorded.outcome === 'gone')
    log.warn({ endpointId: endpoint.id }, 'webhook endpoint answered 410: disabled');
  if (recorded.outcome === 'delivered' || recorded.outcome === 'gone')
    return { ...answer, outcome: recorded.outcome };
  if (recorded.disabled && !isLast) return { ...answer, outcome: 'held' };
  throw new RetryLaterError(
    `delivery attempt ${recorded.attempt} to endpoint ${endpoint.id} failed: ${attempt.error}`,
    retryAfterMs,
  );
}

/**
 * Whether this job may attempt the delivery now, and what it needs to: nothing when the endpoint
 * or the event is gone, the delivery is held (it comes back through the relay's resume, under a
 * new job), another job owns it (a manual retry, a replay or the sweep took it over, and this one
 * must not send a second copy), or an automatic job finds it finished. A disabled endpoint holds
 * it. Otherwise the attempt is marked as begun, so the sweep leaves it alone while in flight.
 * No transaction: nothing here is locked and each statement stands on its own, so BEGIN and
 * COMMIT would only add round trips (what a delivery costs is mostly its round trips).
 */
async function claimAttempt(
  db: Knex,
  jobId: string,
  payload: PayloadOf<typeof webhookJobs.deliver>,
): Promise<DeliveryContext | DeliverResult> {
  // Also waits for a transaction still writing the row (the relay's, a manual retry's requeue).
  await ensureDelivery(db, payload.endpointId, payload.eventId, jobId);
  const context = await loadDeliveryContext(db, payload.endpointId, payload.eventId);
  if (!context) return { deliveryId: null, outcome: 'skipped' };
  const { delivery, endpoint } = context;
  if (delivery.status === 'held') return { deliveryId: delivery.id, outcome: 'held' };
  if (delivery.job_id !== null && delivery.job_id !== jobId)
    return { deliveryId: delivery.id, outcome: 'superseded' };
  const automatic = payload.cause === 'new' || payload.cause === 'resume' || payload.cause === 'sweep';
  if (automatic && delivery.status === 'delivered')
    return { deliveryId: delivery.id, outcome: 'already_delivered' };
  if (automatic && delivery.status === 'failed')
    return { deliveryId: delivery.id, outcome: 'already_failed' };
  if (endpoint.status === 'disabled') {
    await setDeliveryStatus(db, delivery.id, 'held');
    return { deliveryId: delivery.id, outcome: 'held' };
  }
  await markAttemptStarted(db, delivery.id);
  return context;
}

/**
 * The signed POST (Standard Webhooks), and the attempt as it is recorded. It starts when the
 * endpoint's rate limit let it go (`sendAt`), or now.
 */
async function send(
  deps: DeliveryDeps,
  { endpoint, event }: DeliveryContext,
  jobId: string | null,
  sendAt: Date | undefined,
): Promise<{ attempt: Attempt; result: SendResult }> {
  const { config } = deps;
  const body = JSON.stringify({
    id: event.id,
    type: event.type,
    timestamp: event.occurredAt,
    seq: event.seq,
    aggregate: event.aggregate,
    data: event.data,
  });
  const startedAt = sendAt ?? new Date();
  const result = await postJson({
    userAgent: 'Stockflow-Webhooks/1',
    url: endpoint.url,
    body,
    headers: signatureHeaders({
      eventId: event.id,
      body,
      secrets: signingSecrets(endpoint, deps.secrets),
      at: startedAt,
    }),
    timeoutMs: config.WEBHOOK_TIMEOUT_MS,
    allowPrivate: config.WEBHOOK_ALLOW_PRIVATE_TARGETS,
    allowPrivateSetting: 'WEBHOOK_ALLOW_PRIVATE_TARGETS',
  });
  const status = result.statusCode;
  const succeeded = status !== undefined && status >= 200 && status < 300;
  const attempt: Attempt = {
    startedAt: startedAt.toISOString(),
    durationMs: result.durationMs,
    statusCode: status ?? null,
    responseBody: result.body ?? null,
    error: succeeded ? null : (result.error ?? `HTTP ${status}`),
    outcome: succeeded ? 'delivered' : status === 410 ? 'gone' : result.refused ? 'refused' : 'failed',
    jobId,
    worker: workerName,
  };
  return { attempt, result };
}

/**
 * Records the attempt and what it means: delivered (the breaker closes); gone (410: the receiver
 * turned the endpoint off, the delivery is held); or failed: pending for the next attempt, or
 * failed for good on the last one (with `webhook.delivery_exhausted`), counted by the breaker,
 * and held when the breaker opened. `again`: this attempt may be recorded already (see
 * `findRecordedAttempt`).
 */
async function recordOutcome(
  trx: Knex.Transaction,
  config: Config,
  { delivery, endpoint, event }: DeliveryContext,
  attempt: Attempt,
  isLast: boolean,
  again: boolean,
): Promise<{
  outcome: 'delivered' | 'gone' | 'failed' | 'already_delivered';
  attempt: number;
  disabled: boolean;
}> {
  if (again) {
    // Recorded already (with everything it changed): say what it came to, as far as it still holds.
    const earlier = await findRecordedAttempt(trx, delivery.id, attempt);
    if (earlier) {
      if (attempt.outcome === 'delivered' || attempt.outcome === 'gone')
        return { outcome: attempt.outcome, attempt: earlier.attempt, disabled: attempt.outcome === 'gone' };
      if (earlier.status === 'delivered')
        return { outcome: 'already_delivered', attempt: earlier.attempt, disabled: false };
      return { outcome: 'failed', attempt: earlier.attempt, disabled: earlier.status === 'held' };
    }
  }
  if (attempt.outcome === 'delivered') {
    const row = await recordAttempt(trx, { delivery, status: 'delivered', attempt });
    await closeBreaker(trx, endpoint.id);
    return { outcome: 'delivered', attempt: row.attempts, disabled: false };
  }
  if (attempt.outcome === 'gone') {
    const row = await recordAttempt(trx, { delivery, status: 'held', attempt });
    await disableEndpoint(trx, endpoint.id, 'gone', {
      statusCode: 410,
      deliveryId: delivery.id,
      eventId: event.id,
    });
    return { outcome: 'gone', attempt: row.attempts, disabled: true };
  }
  const row = await recordAttempt(trx, { delivery, status: isLast ? 'failed' : 'pending', attempt });
  // Another job (a manual retry) delivered it meanwhile: the database kept it delivered, and this
  // failed attempt stays in the log only; nothing to retry, no breaker count, no exhaustion.
  if (row.status === 'delivered')
    return { outcome: 'already_delivered', attempt: row.attempts, disabled: false };
  const breaker = await countFailedAttempt(trx, { endpointId: endpoint.id, finalAttempt: isLast }, config);
  if (isLast) {
    await appendEvent(trx, {
      type: 'webhook.delivery_exhausted',
      aggregate: { type: 'webhook_endpoint', id: endpoint.id },
      data: {
        deliveryId: delivery.id,
        endpointId: endpoint.id,
        eventId: event.id,
        eventSeq: event.seq,
        eventType: event.type,
        attempts: row.attempts,
        lastStatusCode: attempt.statusCode,
        lastError: attempt.error,
      },
    });
  }
  if (breaker.opens) {
    // A second delivery failing meanwhile finds the endpoint disabled already: open all the same.
    await disableEndpoint(trx, endpoint.id, breaker.opens, {
      consecutiveFailures: breaker.consecutiveFailures,
      lastError: attempt.error,
    });
    // Not tried again while the endpoint is off: held, and resumed when it is enabled.
    if (!isLast) await setDeliveryStatus(trx, delivery.id, 'held');
  }
  return { outcome: 'failed', attempt: row.attempts, disabled: breaker.opens !== undefined };
}
