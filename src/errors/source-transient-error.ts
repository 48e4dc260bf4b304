/** The download failed for a reason worth retrying (a 5xx, 429, a timeout, a reset connection). */
export class SourceTransientError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SourceTransientError';
  }
}
