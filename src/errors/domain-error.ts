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

/** The shape a job's failure takes in its data and in the job status API. */
export interface JobFailure {
  code: string;
  message: string;
  details: Record<string, unknown>;
}
