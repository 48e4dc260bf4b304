/** A send attempt that is tried again; `retryAfterMs` (the supplier's Retry-After) overrides the backoff. */
export class SupplierAttemptError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'SupplierAttemptError';
  }
}
