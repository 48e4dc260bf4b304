import { deliver } from '../webhooks/delivery.js';
import { replayDeliveries } from '../webhooks/replay.js';
import type { QueueHandlers } from './processor.js';

export const webhookHandlers = {
  'webhook.deliver': ({ deps, job, log }, payload) => deliver(deps, job, log, payload),
  'webhook.replay': ({ deps, job, meta }, payload) =>
    replayDeliveries(deps, { jobId: job.id!, actor: meta.actor }, payload),
} satisfies QueueHandlers<'webhooks'>;
