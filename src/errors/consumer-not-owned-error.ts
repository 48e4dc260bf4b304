/** The consumer belongs to another API key: this key may not move it or resume from it. */
export class ConsumerNotOwnedError extends Error {
  constructor(readonly consumer: string) {
    super(`Consumer ${consumer} belongs to another API key; use a consumer name of your own`);
    this.name = 'ConsumerNotOwnedError';
  }
}
