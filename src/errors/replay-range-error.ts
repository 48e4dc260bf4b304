/** `from` is below what retention kept: the state before it cannot be rebuilt from the log. */
export class ReplayRangeError extends Error {
  constructor(readonly oldestSeq: number) {
    super(`Events before ${oldestSeq} are no longer retained; replay from ${oldestSeq} or later`);
    this.name = 'ReplayRangeError';
  }
}
