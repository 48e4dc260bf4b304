/** A storage call that failed in a way worth retrying (remote 5xx/429, timeout, connection reset). */
export class StorageError extends Error {
  constructor(
    message: string,
    readonly status: number | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StorageError';
  }
}
