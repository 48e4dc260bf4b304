/** A key tried to create one consumer more than CONSUMERS_PER_KEY allows. */
export class TooManyConsumersError extends Error {
  constructor(readonly limit: number) {
    super(`This API key already created ${limit} consumers (CONSUMERS_PER_KEY); reuse one of them`);
    this.name = 'TooManyConsumersError';
  }
}
