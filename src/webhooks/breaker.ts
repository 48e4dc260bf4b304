import type { Knex } from 'knex';
import type { Config } from '../config.js';

/**
 * The circuit breaker of an endpoint, kept on its row: `failing_since` (the first failure since
 * the last success) and `consecutive_failures` (deliveries failed for good in a row). It opens,
 * disabling the endpoint, when the endpoint has failed for longer than WEBHOOK_BREAKER_SPAN or
 * WEBHOOK_BREAKER_FAILED_DELIVERIES deliveries in a row failed for good; a delivered attempt
 * closes it. Disabled endpoints hold their deliveries until they are enabled again
 * (`disableEndpoint`, `enableEndpoint` of src/webhooks/endpoints.ts).
 */

/** A delivered attempt: the breaker forgets every failure. */
export async function closeBreaker(db: Knex, endpointId: string): Promise<void> {
  // Skip the write when nothing changes (this row is hot under load).
  await db('webhook_endpoints')
    .where({ id: endpointId })
    .andWhere((w) =>
      w
        .where('consecutive_failures', '>', 0)
        .orWhereNotNull('failing_since')
        .orWhereNull('last_success_at')
        .orWhere('last_success_at', '<', db.raw(`now() - interval '1 second'`)),
    )
    .update({ consecutive_failures: 0, failing_since: null, last_success_at: db.fn.now() });
}

/**
 * A failed attempt: starts (or extends) the failing span and counts a delivery that failed for
 * good. Resolves with why the breaker opens now, if it does (the caller disables the endpoint).
 */
export async function countFailedAttempt(
  db: Knex,
  input: { endpointId: string; finalAttempt: boolean },
  settings: Pick<Config, 'WEBHOOK_BREAKER_SPAN' | 'WEBHOOK_BREAKER_FAILED_DELIVERIES'>,
): Promise<{ opens?: 'failing_span' | 'consecutive_failures'; consecutiveFailures?: number }> {
  const { rows } = await db.raw<{ rows: { consecutive_failures: number; span_exceeded: boolean }[] }>(
    `update webhook_endpoints
     set failing_since = coalesce(failing_since, now()), consecutive_failures = consecutive_failures + ?
     where id = ?
     returning consecutive_failures, failing_since <= now() - make_interval(secs => ?) as span_exceeded`,
    [input.finalAttempt ? 1 : 0, input.endpointId, settings.WEBHOOK_BREAKER_SPAN / 1000],
  );
  const breaker = rows[0];
  const opens = breaker?.span_exceeded
    ? 'failing_span'
    : (breaker?.consecutive_failures ?? 0) >= settings.WEBHOOK_BREAKER_FAILED_DELIVERIES
      ? 'consecutive_failures'
      : undefined;
  return { opens, consecutiveFailures: breaker?.consecutive_failures };
}
