/** Asked for positions the log no longer holds: the reader must resynchronise from `oldestSeq`. */
export class EventsPrunedError extends Error {
  constructor(
    readonly after: number,
    readonly oldestSeq: number,
  ) {
    super(`Events after ${after} are no longer retained; the oldest retained position is ${oldestSeq}`);
    this.name = 'EventsPrunedError';
  }
}
