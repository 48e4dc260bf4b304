/**
 * A failed attempt that is tried again, on its job's backoff unless the remote side said when:
 * `retryAfterMs` (a `Retry-After` answer) then replaces the backoff's delay (src/queues/backoff.ts).
 */
export class RetryLaterError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'RetryLaterError';
  }
}
