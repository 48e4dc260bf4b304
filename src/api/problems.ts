import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { DomainErrorCode, JobFailure } from '../errors/domain-error.js';
import type { Problem } from '../errors/http-problem.js';

/** The Problem schema of the OpenAPI document (extension members such as `suggestions` may follow). */
export const problemSchema = z.object({
  type: z.string().meta({ example: 'urn:stockflow:problem:validation_failed' }),
  title: z.string(),
  status: z.number().int(),
  detail: z.string(),
  code: z.string().meta({ description: 'Stable: what a client branches on (never the message)' }),
  instance: z.string().optional(),
  requestId: z.string().optional(),
  errors: z
    .array(
      z.object({
        in: z.string().optional().meta({ description: 'body, querystring, params or headers' }),
        path: z.string(),
        message: z.string(),
      }),
    )
    .optional(),
  details: z.record(z.string(), z.unknown()).optional(),
});

/** How each domain error a job can end with reaches the PMS. One table: add a code, add its status. */
const domainStatus: Record<DomainErrorCode, number> = {
  invalid_payload: 422,
  not_found: 404,
  sku_taken: 409,
  version_conflict: 409,
  publish_rules_failed: 422,
  invalid_transition: 409,
  unsupported_media_type: 415,
  image_too_large: 413,
  image_corrupt: 422,
  image_timeout: 422,
  source_forbidden: 422,
  source_unavailable: 422,
  insufficient_stock: 409,
  stale_quantity: 409,
  location_taken: 409,
  supplier_taken: 409,
  over_receipt: 409,
  send_failed: 502,
  send_unresolved: 502,
  invalid_acceptance: 422,
  forbidden: 403,
  api_key_required: 422,
  // Orders
  order_number_taken: 409,
  insufficient_reserved: 409,
  return_exceeds_fulfilled: 409,
  inside_retention: 422,
};

export function statusForCode(code: string): number {
  return (domainStatus as Record<string, number>)[code] ?? 500;
}

const titles: Record<string, string> = {
  validation_failed: 'Request validation failed',
  malformed_json: 'Malformed JSON body',
  json_too_deep: 'JSON nested too deeply',
  payload_too_large: 'Request body too large',
  unsupported_media_type: 'Unsupported media type',
  unauthorized: 'Authentication required',
  forbidden: 'Not allowed for this API key',
  not_found: 'Not found',
  method_not_allowed: 'Method not allowed',
  idempotency_key_reused: 'Idempotency-Key reused with a different request',
  precondition_required: 'A version precondition is required',
  sku_taken: 'SKU already taken',
  version_conflict: 'Version conflict',
  publish_rules_failed: 'Publish rules failed',
  invalid_transition: 'Transition not allowed',
  insufficient_stock: 'Insufficient stock',
  stale_quantity: 'Stored quantity differs from the expected one',
  location_taken: 'Location code already taken',
  // Orders and inbound webhooks
  order_number_taken: 'Order number already taken',
  insufficient_reserved: 'Not that much is reserved',
  return_exceeds_fulfilled: 'Return exceeds the fulfilled quantity',
  invalid_signature: 'Webhook signature missing or invalid',
  unknown_webhook_type: 'Unknown webhook type',
  invalid_webhook_payload: 'Webhook payload invalid',
  inside_retention: 'Would prune inside the configured retention',
  invalid_payload: 'Job payload invalid',
  image_too_large: 'Image too large',
  image_corrupt: 'Image corrupt or truncated',
  image_timeout: 'Image processing timed out',
  source_forbidden: 'Image source address not allowed',
  source_unavailable: 'Image source could not be downloaded',
  job_failed: 'Job failed',
  service_unavailable: 'Service unavailable',
  events_pruned: 'Events no longer retained',
  invalid_position: 'Position beyond the event log',
  position_ahead_of_log: 'Resume position ahead of the event log',
  rate_limited: 'Too many requests',
  too_many_auth_failures: 'Too many failed authentications',
  too_many_signature_failures: 'Too many bad webhook signatures',
  too_many_streams: 'Too many open event streams',
  too_many_uploads: 'Too many image uploads in progress',
  too_many_consumers: 'Too many event consumers',
  unsafe_webhook_url: 'Webhook URL not allowed',
  supplier_taken: 'Supplier code already taken',
  unsafe_supplier_url: 'Supplier API URL not allowed',
  over_receipt: 'More received than ordered',
  send_failed: 'Sending the purchase order to the supplier failed',
  send_unresolved: 'The supplier may have the purchase order, but its answer could not be taken',
  invalid_acceptance: 'Accepted quantities do not fit the purchase order',
  api_key_required: "A new apiUrl origin needs the supplier's api key in the same request",
  internal_error: 'Internal server error',
  // Framework and HTTP-parser refusals (src/api/errors.ts).
  bad_request: 'Bad request',
  malformed_url: 'Malformed URL',
  uri_too_long: 'URI too long',
  invalid_content_length: 'Invalid Content-Length',
  headers_too_large: 'Request headers too large',
  request_timeout: 'Request timeout',
  malformed_request: 'Malformed HTTP request',
  incomplete_body: 'Incomplete request body',
  forbidden_field_name: 'Forbidden field name',
  unknown_event_type: 'Unknown event type',
};

export function problem(status: number, code: string, detail: string, extra: Partial<Problem> = {}): Problem {
  return {
    type: `urn:stockflow:problem:${code}`,
    title: titles[code] ?? code,
    status,
    detail,
    code,
    ...extra,
  };
}

export function problemFromFailure(failure: JobFailure): Problem {
  return problem(statusForCode(failure.code), failure.code, failure.message, { details: failure.details });
}

export function sendProblem(reply: FastifyReply, request: FastifyRequest, body: Problem): FastifyReply {
  return reply
    .code(body.status)
    .type('application/problem+json')
    .send({ ...body, instance: body.instance ?? request.url, requestId: request.id });
}
