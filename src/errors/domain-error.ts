import { UnrecoverableError } from 'bullmq';

/**
 * Stable codes of the business rules a job can break. The API maps each to an HTTP status in
 * `src/api/problems.ts`; the PMS reads `code`, never the message.
 */
export type DomainErrorCode =
  | 'invalid_payload'
  | 'not_found'
  | 'sku_taken'
  | 'version_conflict'
  | 'publish_rules_failed'
  | 'invalid_transition'
  | 'unsupported_media_type'
  | 'image_too_large'
  | 'image_corrupt'
  | 'image_timeout'
  | 'source_forbidden'
  | 'source_unavailable'
  | 'insufficient_stock'
  | 'stale_quantity'
  | 'location_taken'
  | 'supplier_taken'
  | 'over_receipt'
  | 'send_failed'
  | 'send_unresolved'
  | 'invalid_acceptance'
  // Supplier settings (written by the API, not by a job)
  | 'forbidden'
  | 'api_key_required'
  // Orders
  | 'order_number_taken'
  | 'insufficient_reserved'
  | 'return_exceeds_fulfilled'
  | 'inside_retention';

/**
 * A broken business rule. It extends UnrecoverableError because BullMQ checks `instanceof` and
 * then fails the job at once: retrying cannot change the outcome.
 */
export class DomainError extends UnrecoverableError {
  constructor(
    readonly code: DomainErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

/** The shape a job's failure takes in the job status API. */
export interface JobFailure {
  code: string;
  message: string;
  details: Record<string, unknown>;
}

/**
 * A domain failure as BullMQ stores it, in the job's `failedReason`: `<code>: <message> <details>`
 * (details as JSON, `{}` when there are none), readable in Bull Board. It is written by the one
 * Redis command that fails the job, so a job is never failed without its code: a write of its own
 * before the failure could be lost while the failure, written after it, was kept (Redis restarted
 * from an `everysec` AOF that missed its last second, a failover that had not replicated it).
 */
export const failedReasonOf = (failure: JobFailure): string =>
  `${failure.code}: ${failure.message} ${JSON.stringify(failure.details)}`;

/**
 * The domain failure in a `failedReason` written by `failedReasonOf`, or undefined for any other
 * reason (a crash's message, a job stalled too often). The details are the first ` {` from which
 * the rest is one JSON object: a message cannot end the reason, since `{}` always follows it.
 */
export function failureFromReason(reason: string | undefined): JobFailure | undefined {
  const head = /^([a-z][a-z0-9_]*): /.exec(reason ?? '');
  if (!reason || !head) return undefined;
  const rest = reason.slice(head[0].length);
  for (let at = rest.indexOf(' {'); at !== -1; at = rest.indexOf(' {', at + 1)) {
    let details: unknown;
    try {
      details = JSON.parse(rest.slice(at + 1));
    } catch {
      continue;
    }
    if (details && typeof details === 'object' && !Array.isArray(details))
      return { code: head[1]!, message: rest.slice(0, at), details: details as Record<string, unknown> };
  }
  return undefined;
}
