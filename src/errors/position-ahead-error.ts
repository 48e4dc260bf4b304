/** A resume position past the head of the log: no such event was ever written. */
export class PositionAheadError extends Error {
  constructor(
    readonly after: number,
    readonly headSeq: number,
  ) {
    super(`Position ${after} is ahead of the event log, whose head is ${headSeq}`);
    this.name = 'PositionAheadError';
  }
}
