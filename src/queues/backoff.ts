import type { BackoffStrategy } from 'bullmq';
import type { Config } from '../config.js';
import { RetryLaterError } from '../errors/retry-later-error.js';

/**
 * Every backoff of the platform (as BullMQ keeps its own in `backoffs.ts`). Jobs name a type in
 * their options; BullMQ computes `exponential` and `fixed` itself and asks `backoffStrategy` for
 * the others. A remote side's `Retry-After` (read by src/outbound/http.ts, carried by a
 * RetryLaterError) replaces whichever delay the type gives.
 */
export const backoffTypes = {
  /** Webhook deliveries: WEBHOOK_RETRY_SCHEDULE, spread by ± WEBHOOK_RETRY_JITTER. */
  webhookSchedule: 'webhook-schedule',
  /** Supplier sends: exponential from SUPPLIER_BACKOFF_MS up to SUPPLIER_BACKOFF_MAX_MS, equal jitter. */
  supplier: 'supplier',
} as const;

/**
 * When a failed webhook delivery is tried again. The schedule gives the delay after each failed
 * attempt; each delay is spread by ± jitter so that deliveries that failed together (a receiver
 * outage) do not all return at the same instant.
 */
export interface RetryPolicy {
  schedule: readonly number[];
  jitter: number;
}

export const webhookRetryPolicy = (
  config: Pick<Config, 'WEBHOOK_RETRY_SCHEDULE' | 'WEBHOOK_RETRY_JITTER'>,
): RetryPolicy => ({ schedule: config.WEBHOOK_RETRY_SCHEDULE, jitter: config.WEBHOOK_RETRY_JITTER });

/**
 * A transaction that records an outcome already reached outside Postgres (a webhook answered) is
 * tried again after each of these delays while Postgres is away (`transactionRetried`), within the
 * same run of the job: about 2.6 s in all, a Postgres restart's usual length.
 */
export const recordRetryDelaysMs = [100, 500, 2000] as const;

/** Delay before the attempt that follows attempt number `attemptsMade` (1-based). */
export function retryDelayMs(policy: RetryPolicy, attemptsMade: number, random = Math.random): number {
  const index = Math.min(Math.max(attemptsMade, 1), policy.schedule.length) - 1;
  const base = policy.schedule[index] ?? 0;
  const spread = 1 - policy.jitter + 2 * policy.jitter * random();
  return Math.max(0, Math.round(base * spread));
}

/** Total attempts: the first plus one per schedule entry. */
export const attemptsFor = (policy: Pick<RetryPolicy, 'schedule'>) => policy.schedule.length + 1;

/**
 * Exponential backoff with "equal jitter": the n-th retry waits between half and all of
 * min(max, base × 2^(n−1)), so orders that failed together do not return together.
 */
export function supplierRetryDelayMs(
  attemptsMade: number,
  settings: { baseMs: number; maxMs: number },
  random = Math.random,
): number {
  const ceiling = Math.min(settings.maxMs, settings.baseMs * 2 ** Math.max(0, attemptsMade - 1));
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}

/** The custom backoff of every worker (the Worker's `settings.backoffStrategy`). */
export function backoffStrategy(
  config: Pick<
    Config,
    'WEBHOOK_RETRY_SCHEDULE' | 'WEBHOOK_RETRY_JITTER' | 'SUPPLIER_BACKOFF_MS' | 'SUPPLIER_BACKOFF_MAX_MS'
  >,
): BackoffStrategy {
  const webhooks = webhookRetryPolicy(config);
  const supplier = { baseMs: config.SUPPLIER_BACKOFF_MS, maxMs: config.SUPPLIER_BACKOFF_MAX_MS };
  return (attemptsMade, type, error) => {
    if (type !== backoffTypes.webhookSchedule && type !== backoffTypes.supplier)
      throw new Error(`Unknown backoff type ${type}`);
    // The remote side said when: its answer wins over our schedule.
    if (error instanceof RetryLaterError && error.retryAfterMs !== undefined) return error.retryAfterMs;
    return type === backoffTypes.supplier
      ? supplierRetryDelayMs(attemptsMade, supplier)
      : retryDelayMs(webhooks, attemptsMade);
  };
}
