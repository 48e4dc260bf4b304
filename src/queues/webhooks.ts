import { z } from 'zod';
import { instantSchema } from '../schemas/fields.js';
import { typePatternSchema } from '../schemas/type-patterns.js';
import { backoffTypes } from './backoff.js';
import { defineJob } from './job.js';

/**
 * Why a delivery job exists: the relay's first one, a later push by a person or the breaker, or
 * the sweep that re-enqueues a pending delivery whose job was lost.
 */
export const deliveryCauses = ['new', 'retry', 'resume', 'replay', 'sweep'] as const;
export type DeliveryCause = (typeof deliveryCauses)[number];

/**
 * Where a delivery job waits. BullMQ takes the jobs without a priority (0, its wait list) before
 * any prioritized one, and prioritized ones lowest number first. Fresh deliveries (the relay's, a
 * resume's, a replay's, the sweep's) wait as `freshDeliveryPriority`, behind every delivery that is
 * due: a job leaves that priority at its first run (src/webhooks/delivery.ts), so its retries, its
 * rate-limit slots and a record left to finish come back at 0, when their schedule says, however
 * long the line of fresh ones. A manual retry is due at once.
 */
const freshDeliveryPriority = 10;
export const deliveryPriority = (cause: DeliveryCause) => (cause === 'retry' ? 0 : freshDeliveryPriority);

// Compatibility: payloads only gain optional fields (a worker must accept jobs of the last release).
export const deliverPayload = z.object({
  endpointId: z.uuid(),
  eventId: z.uuid(),
  cause: z.enum(deliveryCauses).default('new'),
});

/** A replay's time range (ISO 8601 with offset) and type filter. */
const rangeFields = {
  since: instantSchema,
  until: instantSchema.optional(),
  /** Narrows the endpoint's own event types; default: the endpoint's types. */
  types: z.array(typePatternSchema).min(1).max(50).optional(),
};
const untilAfterSince = (p: { since: string; until?: string }) =>
  !p.until || Date.parse(p.until) > Date.parse(p.since);
const untilIssue = { message: 'until must be after since', path: ['until'] };

/** The time range of a replay, as the API takes it. */
export const replayRange = z.object(rangeFields).refine(untilAfterSince, untilIssue);

export const replayPayload = z
  .object({ endpointId: z.uuid(), ...rangeFields })
  .refine(untilAfterSince, untilIssue);

export interface DeliverResult {
  deliveryId: string | null;
  /** superseded: a later job (retry, replay, sweep) owns the delivery now; this one sent nothing. */
  outcome: 'delivered' | 'held' | 'gone' | 'skipped' | 'already_delivered' | 'already_failed' | 'superseded';
  attempt?: number;
  statusCode?: number;
}

export const webhookJobs = {
  /** One POST of one event to one endpoint; retried on the WEBHOOK_RETRY_SCHEDULE (attempts set when queued). */
  deliver: defineJob<DeliverResult>()({
    name: 'webhook.deliver',
    queue: 'webhooks',
    payload: deliverPayload,
    options: {
      backoff: { type: backoffTypes.webhookSchedule },
      // A day is plenty for the relay's "add again" to find the job; the delivery rows keep the history.
      removeOnComplete: { age: 86_400 },
    },
  }),
  /** Re-queues an endpoint's deliveries of every matching event in a time range. */
  replay: defineJob<{ events: number }>()({
    name: 'webhook.replay',
    queue: 'webhooks',
    payload: replayPayload,
  }),
};
