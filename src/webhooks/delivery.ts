import { hostname } from 'node:os';
import type { Job } from 'bullmq';
import type { Knex } from 'knex';
import type { Config } from '../config.js';
import type { RedisClient } from '../connections.js';
import { setJobContext } from '../db/job-context.js';
import { RetryLaterError } from '../errors/retry-later-error.js';
import { appendEvent } from '../events/outbox.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../ops/metrics.js';
import { postJson, type SendResult } from '../outbound/http.js';
import { isLastAttempt, type JobData, type PayloadOf } from '../queues/job.js';
import type { DeliverResult, webhookJobs } from '../queues/webhooks.js';
import type { SecretBox } from '../secrets.js';
import { closeBreaker, countFailedAttempt } from './breaker.js';
import {
  type DeliveryContext,
  ensureDelivery,
  loadDeliveryContext,
  markAttemptStarted,
  recordAttempt,
  setDeliveryStatus,
  type WebhookAttempt,
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

/**
 * One attempt of one delivery (event × endpoint), the POST outside any transaction:
 * 1. (transaction) whether this job still owns a delivery to attempt (see `claimAttempt`);
 * 2. the endpoint's rate limit, then the signed POST;
 * 3. (transaction) the attempt recorded, the delivery moved on, the breaker told. A failure is
 *    thrown after it is recorded: BullMQ retries on the schedule (or the receiver's Retry-After),
 *    or fails the job when this was the last attempt (the delivery is `failed` and
 *    `webhook.delivery_exhausted` written by then).
 */
export async function deliver(
  deps: DeliveryDeps,
  job: Job<JobData>,
  log: Logger,
  payload: PayloadOf<typeof webhookJobs.deliver>,
): Promise<DeliverResult> {
  const { config, metrics } = deps;
  const claimed = await deps.db.transaction((trx) => claimAttempt(trx, job.id!, payload));
  if ('outcome' in claimed) return claimed;
  const { delivery, endpoint } = claimed;

  const sendAt = await waitForRateSlot(
    deps.redis,
    config.QUEUE_PREFIX,
    job,
    endpoint.id,
    endpoint.rate_limit_per_second,
  );
  const { attempt, result } = await send(deps, claimed, job.id ?? null, sendAt);
  const status = result.statusCode;
  const isLast = isLastAttempt(job);
  metrics.webhookAttempts.inc({ outcome: attempt.outcome });
  metrics.webhookAttemptDuration.observe({ outcome: attempt.outcome }, result.durationMs / 1000);

  const recorded = await deps.db.transaction(async (trx) => {
    await setJobContext(trx, { actor: 'system', jobId: job.id });
    return recordOutcome(trx, config, claimed, attempt, isLast);
  });
  const answer = { deliveryId: delivery.id, attempt: recorded.attempt, statusCode: status };
  if (recorded.outcome === 'already_delivered') return { ...answer, outcome: recorded.outcome };
  if (recorded.outcome === 'delivered' || recorded.outcome === 'gone' || isLast) {
    metrics.webhookDeliveries.inc({
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
    status === 429 || status === 503 ? result.retryAfterMs : undefined,
  );
}

/**
 * Whether this job may attempt the delivery now, and what it needs to: nothing when the endpoint
 * or the event is gone, the delivery is held (it comes back through the relay's resume, under a
 * new job), another job owns it (a manual retry, a replay or the sweep took it over, and this one
 * must not send a second copy), or an automatic job finds it finished. A disabled endpoint holds
 * it. Otherwise the attempt is marked as begun, so the sweep leaves it alone while in flight.
 */
async function claimAttempt(
  trx: Knex.Transaction,
  jobId: string,
  payload: PayloadOf<typeof webhookJobs.deliver>,
): Promise<DeliveryContext | DeliverResult> {
  await ensureDelivery(trx, payload.endpointId, payload.eventId, jobId);
  const context = await loadDeliveryContext(trx, payload.endpointId, payload.eventId);
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
    await setDeliveryStatus(trx, delivery.id, 'held');
    return { deliveryId: delivery.id, outcome: 'held' };
  }
  await markAttemptStarted(trx, delivery.id);
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
 * and held when the breaker opened.
 */
async function recordOutcome(
  trx: Knex.Transaction,
  config: Config,
  { delivery, endpoint, event }: DeliveryContext,
  attempt: Attempt,
  isLast: boolean,
): Promise<{
  outcome: 'delivered' | 'gone' | 'failed' | 'already_delivered';
  attempt: number;
  disabled: boolean;
}> {
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
