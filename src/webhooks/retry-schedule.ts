/**
 * When a failed webhook delivery is tried again. The schedule (WEBHOOK_RETRY_SCHEDULE) gives the
 * delay after each failed attempt; each delay is spread by ± jitter so that deliveries that failed
 * together (a receiver outage) do not all return at the same instant. A receiver's Retry-After
 * (on 429 and 503) replaces the scheduled delay.
 */
export interface RetryPolicy {
  schedule: readonly number[];
  jitter: number;
}

/** Longest Retry-After we honour; a longer one is cut to this. */
export const maxRetryAfterMs = 24 * 3_600_000;

/** Delay before the attempt that follows attempt number `attemptsMade` (1-based). */
export function retryDelayMs(policy: RetryPolicy, attemptsMade: number, random = Math.random): number {
  const index = Math.min(Math.max(attemptsMade, 1), policy.schedule.length) - 1;
  const base = policy.schedule[index] ?? 0;
  const spread = 1 - policy.jitter + 2 * policy.jitter * random();
  return Math.max(0, Math.round(base * spread));
}

/** Total attempts: the first plus one per schedule entry. */
export const attemptsFor = (policy: RetryPolicy) => policy.schedule.length + 1;

/** `Retry-After` as delay-seconds or an HTTP date, in ms from `now`; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  let ms: number;
  if (/^\d+$/.test(trimmed)) {
    ms = Number(trimmed) * 1000;
  } else {
    const at = Date.parse(trimmed);
    if (Number.isNaN(at)) return undefined;
    ms = at - now;
  }
  return Math.min(Math.max(ms, 0), maxRetryAfterMs);
}
