import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { type AdvancedOptions, DelayedError } from 'bullmq';
import type { Config } from '../config.js';
import { DeliveryAttemptError } from '../errors/delivery-attempt-error.js';
import { DomainError } from '../errors/domain-error.js';
import { readEventsBetween } from '../events/event-log.js';
import { appendEvent, setTransactionActor } from '../events/outbox.js';
import { postJson, type SendResult } from '../outbound/http.js';
import type { JobData, PayloadOf } from '../queues/job.js';
import { type DeliverResult, deliveryJob, type webhookJobs } from '../queues/webhooks.js';
import {
  type DeliveryContext,
  ensureDelivery,
  loadDeliveryContext,
  markAttemptStarted,
  recordAttempt,
  setDeliveryStatus,
} from '../webhooks/deliveries.js';
import { disableEndpoint, getEndpointRow, signingSecrets } from '../webhooks/endpoints.js';
import { claimSend, reserveDeliverySlot } from '../webhooks/rate-limit.js';
import { attemptsFor, parseRetryAfter, type RetryPolicy, retryDelayMs } from '../webhooks/retry-schedule.js';
import { signatureHeaders } from '../webhooks/signing.js';
import { routes } from './outbox-relay.js';
import type { JobContext, QueueHandlers } from './processor.js';

const backoffType = 'webhook-schedule';
const workerName = `${hostname()}:${process.pid}`;

const policyOf = (config: Config): RetryPolicy => ({
  schedule: config.WEBHOOK_RETRY_SCHEDULE,
  jitter: config.WEBHOOK_RETRY_JITTER,
});

/** Worker settings of the webhooks queue: the retry schedule as a BullMQ custom backoff. */
export function webhookWorkerSettings(config: Config): AdvancedOptions {
  const policy = policyOf(config);
  return {
    backoffStrategy: (attemptsMade, type, error) => {
      if (type !== backoffType) throw new Error(`Unknown backoff type ${type} on the webhooks queue`);
      if (error instanceof DeliveryAttemptError && error.retryAfterMs !== undefined)
        return error.retryAfterMs;
      return retryDelayMs(policy, attemptsMade);
    },
  };
}

type RateData = JobData & { rateSlotReserved?: boolean };

/**
 * Holds the job until the endpoint's rate limit lets it go: first until its booked slot (pacing),
 * then, as it goes, until the endpoint's last second has room (the limit).
 */
async function waitForRateSlot(ctx: JobContext, endpointId: string, perSecond: number | null): Promise<void> {
  if (!perSecond) return;
  const { job, deps } = ctx;
  const prefix = deps.config.QUEUE_PREFIX;
  const data = job.data as RateData;
  if (!data.rateSlotReserved) {
    const waitMs = await reserveDeliverySlot(deps.redis, prefix, endpointId, perSecond);
    if (waitMs > 2) return delayUntil(ctx, Date.now() + waitMs);
  }
  const fullForMs = await claimSend(deps.redis, prefix, endpointId, perSecond, `${job.id}:${randomUUID()}`);
  if (fullForMs > 0) return delayUntil(ctx, Date.now() + fullForMs);
  if (data.rateSlotReserved) {
    // Going now: a later attempt books a slot of its own.
    const { rateSlotReserved: _, ...rest } = data;
    await job.updateData(rest);
  }
}

/** Moves the job back to the queue until `at`, marked as holding a slot; BullMQ then stops this run. */
async function delayUntil({ job }: JobContext, at: number): Promise<never> {
  await job.updateData({ ...job.data, rateSlotReserved: true } as RateData);
  await job.moveToDelayed(at, job.token);
  throw new DelayedError();
}

function payloadBody(event: DeliveryContext['event']): string {
  return JSON.stringify({
    id: event.id,
    type: event.type,
    timestamp: event.occurredAt,
    seq: event.seq,
    aggregate: event.aggregate,
    data: event.data,
  });
}

function describeFailure(result: SendResult): string {
  if (result.error) return result.error;
  return `HTTP ${result.statusCode}`;
}

async function deliver(
  ctx: JobContext,
  payload: PayloadOf<typeof webhookJobs.deliver>,
): Promise<DeliverResult> {
  const { deps, job, log } = ctx;
  const { db, config } = deps;

  const prepared = await db.transaction(async (trx): Promise<DeliveryContext | DeliverResult> => {
    await ensureDelivery(trx, payload.endpointId, payload.eventId, job.id!);
    const context = await loadDeliveryContext(trx, payload.endpointId, payload.eventId);
    // The endpoint was deleted or the event pruned: nothing left to deliver.
    if (!context) return { deliveryId: null, outcome: 'skipped' };
    const { delivery, endpoint } = context;
    // Held deliveries come back through the relay's resume, under a new job.
    if (delivery.status === 'held') return { deliveryId: delivery.id, outcome: 'held' };
    // One job owns a delivery at a time: a manual retry, a replay or the sweep takes it over from
    // an earlier job, which then ends here instead of sending a second copy.
    if (delivery.job_id !== null && delivery.job_id !== job.id)
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
  });
  if ('outcome' in prepared) return prepared;
  const { delivery, endpoint, event } = prepared;

  await waitForRateSlot(ctx, endpoint.id, endpoint.rate_limit_per_second);

  const body = payloadBody(event);
  const startedAt = new Date();
  const result = await postJson({
    userAgent: 'Stockflow-Webhooks/1',
    url: endpoint.url,
    body,
    headers: signatureHeaders({
      eventId: event.id,
      body,
      secrets: signingSecrets(endpoint, ctx.deps.secrets),
      at: startedAt,
    }),
    timeoutMs: config.WEBHOOK_TIMEOUT_MS,
    allowPrivate: config.WEBHOOK_ALLOW_PRIVATE_TARGETS,
    allowPrivateSetting: 'WEBHOOK_ALLOW_PRIVATE_TARGETS',
  });
  const status = result.statusCode;
  const succeeded = status !== undefined && status >= 200 && status < 300;
  const gone = status === 410;
  const isLast = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
  const attempt = {
    startedAt: startedAt.toISOString(),
    durationMs: result.durationMs,
    statusCode: status ?? null,
    responseBody: result.body ?? null,
    error: succeeded ? null : describeFailure(result),
    outcome: succeeded
      ? ('delivered' as const)
      : gone
        ? ('gone' as const)
        : result.refused
          ? ('refused' as const)
          : ('failed' as const),
    jobId: job.id ?? null,
    worker: workerName,
  };
  deps.metrics.webhookAttempts.inc({ outcome: attempt.outcome });
  deps.metrics.webhookAttemptDuration.observe({ outcome: attempt.outcome }, result.durationMs / 1000);

  const recorded = await db.transaction(async (trx) => {
    await setTransactionActor(trx, 'system', job.id);
    if (succeeded) {
      const row = await recordAttempt(trx, { delivery, status: 'delivered', attempt });
      // Reset the breaker; skip the write when nothing changes (this row is hot under load).
      await trx('webhook_endpoints')
        .where({ id: endpoint.id })
        .andWhere((w) =>
          w
            .where('consecutive_failures', '>', 0)
            .orWhereNotNull('failing_since')
            .orWhereNull('last_success_at')
            .orWhere('last_success_at', '<', trx.raw(`now() - interval '1 second'`)),
        )
        .update({ consecutive_failures: 0, failing_since: null, last_success_at: trx.fn.now() });
      return { outcome: 'delivered' as const, attempt: row.attempts, disabled: false };
    }
    if (gone) {
      const row = await recordAttempt(trx, { delivery, status: 'held', attempt });
      await disableEndpoint(trx, endpoint.id, 'gone', {
        statusCode: 410,
        deliveryId: delivery.id,
        eventId: event.id,
      });
      return { outcome: 'gone' as const, attempt: row.attempts, disabled: true };
    }
    const row = await recordAttempt(trx, { delivery, status: isLast ? 'failed' : 'pending', attempt });
    // Another job (a manual retry) delivered it meanwhile: the database kept it delivered, and this
    // failed attempt stays in the log only; nothing to retry, no breaker count, no exhaustion.
    if (row.status === 'delivered')
      return { outcome: 'already_delivered' as const, attempt: row.attempts, disabled: false };
    const { rows: breakerRows } = await trx.raw<{
      rows: { consecutive_failures: number; span_exceeded: boolean }[];
    }>(
      `update webhook_endpoints
       set failing_since = coalesce(failing_since, now()), consecutive_failures = consecutive_failures + ?
       where id = ?
       returning consecutive_failures, failing_since <= now() - make_interval(secs => ?) as span_exceeded`,
      [isLast ? 1 : 0, endpoint.id, config.WEBHOOK_BREAKER_SPAN / 1000],
    );
    const breaker = breakerRows[0];
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
    const reason = breaker?.span_exceeded
      ? ('failing_span' as const)
      : (breaker?.consecutive_failures ?? 0) >= config.WEBHOOK_BREAKER_FAILED_DELIVERIES
        ? ('consecutive_failures' as const)
        : undefined;
    let disabled = false;
    if (reason) {
      disabled = await disableEndpoint(trx, endpoint.id, reason, {
        consecutiveFailures: breaker?.consecutive_failures,
        lastError: attempt.error,
      });
      // Not tried again while the endpoint is off: held, and resumed when it is enabled.
      if (!isLast) await setDeliveryStatus(trx, delivery.id, 'held');
    }
    return { outcome: 'failed' as const, attempt: row.attempts, disabled: disabled || reason !== undefined };
  });

  if (recorded.outcome === 'already_delivered')
    return {
      deliveryId: delivery.id,
      outcome: recorded.outcome,
      attempt: recorded.attempt,
      statusCode: status,
    };
  if (recorded.outcome === 'delivered' || recorded.outcome === 'gone' || isLast) {
    deps.metrics.webhookDeliveries.inc({
      outcome: recorded.outcome === 'failed' ? 'exhausted' : recorded.outcome,
    });
  }
  if (recorded.outcome === 'delivered' || recorded.outcome === 'gone') {
    if (recorded.outcome === 'gone')
      log.warn({ endpointId: endpoint.id }, 'webhook endpoint answered 410: disabled');
    return {
      deliveryId: delivery.id,
      outcome: recorded.outcome,
      attempt: recorded.attempt,
      statusCode: status,
    };
  }
  if (recorded.disabled && !isLast) {
    return { deliveryId: delivery.id, outcome: 'held', attempt: recorded.attempt, statusCode: status };
  }
  const retryAfterMs = status === 429 || status === 503 ? parseRetryAfter(result.retryAfter) : undefined;
  // Thrown after the attempt is recorded: BullMQ retries on the schedule, or fails the job when
  // this was the last attempt (the delivery is already `failed` and the event written).
  throw new DeliveryAttemptError(
    `delivery attempt ${recorded.attempt} to endpoint ${endpoint.id} failed: ${attempt.error}`,
    retryAfterMs,
  );
}

async function replay(
  ctx: JobContext,
  payload: PayloadOf<typeof webhookJobs.replay>,
): Promise<{ events: number }> {
  const { deps, job } = ctx;
  const endpoint = await getEndpointRow(deps.db, payload.endpointId);
  if (!endpoint) throw new DomainError('not_found', `Webhook endpoint ${payload.endpointId} does not exist`);
  const attempts = attemptsFor(policyOf(deps.config));
  let after = 0;
  let count = 0;
  for (;;) {
    const events = await readEventsBetween(deps.db, {
      after,
      since: new Date(payload.since),
      until: payload.until ? new Date(payload.until) : undefined,
      limit: 500,
      types: payload.types,
    });
    if (events.length === 0) break;
    after = events[events.length - 1]!.seq;
    // What the endpoint subscribes to, from any time (replay also reaches events before its creation).
    const wanted = events.filter((e) =>
      routes(
        { ...endpoint, created_seq: 0 },
        { ...e, aggregate_type: e.aggregate.type, aggregate_id: e.aggregate.id },
      ),
    );
    if (wanted.length === 0) continue;
    // Ids carry this replay job's id: a retried replay adds each delivery once.
    const jobs = wanted.map((e) =>
      deliveryJob(
        { eventId: e.id, endpointId: endpoint.id, cause: 'replay', discriminator: job.id },
        attempts,
        ctx.meta.actor,
      ),
    );
    await deps.db.transaction(async (trx) => {
      await trx('webhook_deliveries')
        .insert(
          wanted.map((e, i) => ({
            endpoint_id: endpoint.id,
            event_id: e.id,
            event_seq: e.seq,
            event_type: e.type,
            job_id: jobs[i]!.opts.jobId,
          })),
        )
        .onConflict(['endpoint_id', 'event_id'])
        .merge({
          status: 'pending',
          enqueue_count: trx.raw('webhook_deliveries.enqueue_count + 1'),
          job_id: trx.raw('excluded.job_id'),
          updated_at: trx.fn.now(),
        } as never);
      await deps.queues.webhooks.addBulk(jobs);
    });
    count += wanted.length;
  }
  return { events: count };
}

export const webhookHandlers = {
  'webhook.deliver': deliver,
  'webhook.replay': replay,
} satisfies QueueHandlers<'webhooks'>;
