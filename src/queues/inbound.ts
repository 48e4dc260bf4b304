import type { InboundOutcome } from '../domain/inbound.js';
import { inboundPayload } from '../schemas/inbound.js';
import { defineJob } from './job.js';

export const inboundJobs = {
  apply: defineJob<InboundOutcome>()({
    name: 'inbound.pms-event',
    queue: 'inbound',
    payload: inboundPayload,
  }),
};
