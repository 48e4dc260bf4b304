import { z } from 'zod';

/** A webhook endpoint as the API answers it and `webhook.endpoint_*` events carry it (no secret). */
export const webhookEndpointSchema = z
  .object({
    id: z.string(),
    url: z.string(),
    description: z.string().nullable(),
    eventTypes: z.array(z.string()),
    rateLimitPerSecond: z.number().int().nullable(),
    status: z.enum(['enabled', 'disabled']),
    disabledReason: z.string().nullable(),
    disabledAt: z.string().nullable(),
    consecutiveFailures: z.number().int(),
    failingSince: z.string().nullable(),
    lastSuccessAt: z.string().nullable(),
    /** While set, the previous secret still signs alongside the current one. */
    previousSecretExpiresAt: z.string().nullable(),
    version: z.number().int(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: 'WebhookEndpoint' });
export type WebhookEndpoint = z.output<typeof webhookEndpointSchema>;

/** pending: queued or between retries; held: its endpoint is disabled (resumed on enable). */
const deliveryStatusSchema = z.enum(['pending', 'delivered', 'failed', 'held']);
export type DeliveryStatus = z.output<typeof deliveryStatusSchema>;

/** One event for one endpoint, and where its delivery stands. */
export const webhookDeliverySchema = z.object({
  id: z.string(),
  endpointId: z.string(),
  eventId: z.string(),
  eventSeq: z.number().int(),
  eventType: z.string(),
  status: deliveryStatusSchema,
  attempts: z.number().int(),
  lastAttemptAt: z.string().nullable(),
  lastStatusCode: z.number().int().nullable(),
  lastError: z.string().nullable(),
  deliveredAt: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type WebhookDelivery = z.output<typeof webhookDeliverySchema>;

/** refused: the SSRF guard stopped it before any connection; gone: the receiver answered 410. */
const attemptOutcomeSchema = z.enum(['delivered', 'failed', 'gone', 'refused']);
export type AttemptOutcome = z.output<typeof attemptOutcomeSchema>;

export const webhookAttemptSchema = z.object({
  attempt: z.number().int(),
  startedAt: z.string(),
  durationMs: z.number().int(),
  statusCode: z.number().int().nullable(),
  responseBody: z.string().nullable(),
  error: z.string().nullable(),
  outcome: attemptOutcomeSchema,
  jobId: z.string().nullable(),
  worker: z.string().nullable(),
});
export type WebhookAttempt = z.output<typeof webhookAttemptSchema>;
