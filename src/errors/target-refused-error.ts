/**
 * Refused by the guard; no connection was made. The message names the host the caller gave and
 * never the addresses DNS answered (they would map our internal network for the caller).
 */
export class TargetRefusedError extends Error {
  readonly code = 'ERR_TARGET_REFUSED';
  constructor(
    readonly host: string,
    readonly setting: string,
  ) {
    super(
      `refused ${host}: it is or resolves to a non-public address (loopback, private, link-local, ` +
        `metadata or reserved), which is not allowed (${setting})`,
    );
    this.name = 'TargetRefusedError';
  }
}
