import { createHash } from 'node:crypto';
import type { JobsOptions } from 'bullmq';
import { z } from 'zod';
import { typePatternSchema } from '../events/type-patterns.js';
import { instantSchema } from '../fields.js';
import { defineJob } from './job.js';

/**
 * Why a delivery job exists: the relay's first one, a later push by a person or the breaker, or
 * the sweep that re-enqueues a pending delivery whose job was lost.
 */
export const deliveryCauses = ['new', 'retry', 'resume', 'replay', 'sweep'] as const;
export type DeliveryCause = (typeof deliveryCauses)[number];

// Compatibility: payloads only gain optional fields (a worker must accept jobs of the last release).
export const deliverPayload = z.object({
  endpointId: z.uuid(),
  eventId: z.uuid(),
  cause: z.enum(deliveryCauses).default('new'),
});

const untilAfterSince = {
  check: (p: { since: string; until?: string }) => !p.until || Date.parse(p.until) > Date.parse(p.since),
  message: 'until must be after since',
};

/** The time range of a replay (ISO 8601 with offset), as the API takes it. */
export const replayRange = z
  .object({
    since: instantSchema,
    until: instantSchema.optional(),
    /** Narrows the endpoint's own event types; default: the endpoint's types. */
    types: z.array(typePatternSchema).min(1).max(50).optional(),
  })
  .refine(untilAfterSince.check, { message: untilAfterSince.message, path: ['until'] });

export const replayPayload = z
  .object({
    endpointId: z.uuid(),
    since: instantSchema,
    until: instantSchema.optional(),
    types: z.array(typePatternSchema).min(1).max(50).optional(),
  })
  .refine(untilAfterSince.check, { message: untilAfterSince.message, path: ['until'] });

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
      backoff: { type: 'webhook-schedule' },
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

/**
 * A delivery job's id: derived from event, endpoint and cause, so queueing the same work twice
 * (a relay that ran twice, a replay job retried) adds it once.
 */
export function deliveryJobId(
  eventId: string,
  endpointId: string,
  cause: DeliveryCause,
  discriminator = '0',
) {
  const digest = createHash('sha256')
    .update(`${eventId}\n${endpointId}\n${cause}\n${discriminator}`)
    .digest('hex');
  return `webhooks-${digest.slice(0, 40)}`;
}

/** bulk-add entry for a delivery job; `attempts` follows the configured retry schedule. */
export function deliveryJob(
  input: { eventId: string; endpointId: string; cause: DeliveryCause; discriminator?: string },
  attempts: number,
  actor = 'system',
): {
  name: string;
  data: { payload: z.input<typeof deliverPayload>; meta: { actor: string } };
  opts: JobsOptions;
} {
  return {
    name: webhookJobs.deliver.name,
    data: {
      payload: { endpointId: input.endpointId, eventId: input.eventId, cause: input.cause },
      meta: { actor },
    },
    opts: {
      ...webhookJobs.deliver.options,
      attempts,
      jobId: deliveryJobId(input.eventId, input.endpointId, input.cause, input.discriminator),
    },
  };
}
