/** A failed attempt that is tried again; `retryAfterMs` (from 429/503 Retry-After) overrides the schedule. */
export class DeliveryAttemptError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'DeliveryAttemptError';
  }
}
