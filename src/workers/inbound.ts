import { applyInbound } from '../domain/inbound.js';
import { applyOnce } from './group-commit.js';
import type { QueueHandlers } from './processor.js';

export const inboundHandlers = {
  'inbound.pms-event': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => applyInbound(trx, payload, job.id!)),
} satisfies QueueHandlers<'inbound'>;
