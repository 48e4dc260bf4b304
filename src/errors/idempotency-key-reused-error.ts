/** The Idempotency-Key was used before with another payload. */
export class IdempotencyKeyReusedError extends Error {
  constructor(readonly jobId: string) {
    super('This Idempotency-Key was already used with a different request');
    this.name = 'IdempotencyKeyReusedError';
  }
}
