import { createHash } from 'node:crypto';
import type { JobsOptions } from 'bullmq';
import type { Config } from '../config.js';
import { attemptsFor } from './backoff.js';
import type { JobName, JobNamed } from './catalog.js';
import type { AnyJob, JobData, JobMeta, PayloadOf, ResultOf } from './job.js';
import type { Queues } from './queues.js';
import { reorderJobs } from './reorder.js';
import { deliveryPriority, webhookJobs } from './webhooks.js';

/**
 * A job the platform queues itself, as whoever decides it names it. `key` tells it apart from the
 * earlier jobs of the same kind and payload (see each kind's id below); `meta` defaults to the
 * system actor.
 */
export type FollowUp = (
  | { kind: 'delivery'; payload: PayloadOf<typeof webhookJobs.deliver> }
  | { kind: 'check'; payload: PayloadOf<typeof reorderJobs.check>; key: string }
  | { kind: 'send'; payload: PayloadOf<typeof reorderJobs.send>; delayMs?: number }
) & { key?: string; meta?: JobMeta };

type Settings = Pick<Config, 'WEBHOOK_RETRY_SCHEDULE' | 'SUPPLIER_SEND_ATTEMPTS'>;

/** The job each kind queues, and its attempts where the settings decide them. */
const kinds: Record<FollowUp['kind'], { job: AnyJob; attempts?: (settings: Settings) => number }> = {
  delivery: {
    job: webhookJobs.deliver,
    attempts: (settings) => attemptsFor({ schedule: settings.WEBHOOK_RETRY_SCHEDULE }),
  },
  check: { job: reorderJobs.check },
  send: { job: reorderJobs.send, attempts: (settings) => settings.SUPPLIER_SEND_ATTEMPTS },
};

const digest = (text: string, length: number) =>
  createHash('sha256').update(text).digest('hex').slice(0, length);

/**
 * One id scheme per kind, derived from what the job is about, so queueing the same work twice (a
 * retried job, a relay that ran twice, a commit lost after the add) adds it once. Every id starts
 * with its queue's name (`queueOfJobId`).
 */
export function followUpJobId(followUp: FollowUp): string {
  const { key } = followUp;
  switch (followUp.kind) {
    // Of (event, endpoint, cause, key: the enqueue count or the replay job).
    case 'delivery': {
      const { eventId, endpointId, cause } = followUp.payload;
      return `webhooks-${digest(`${eventId}\n${endpointId}\n${cause}\n${key ?? '0'}`, 40)}`;
    }
    // Of (rule, key: the cause): one cause, one check, so a burst of causes collapses.
    case 'check':
      return `reorder-check-${followUp.payload.ruleId}-${digest(`${followUp.payload.ruleId}\n${key}`, 24)}`;
    // One per order; an operator's resend is a new round, named by its key.
    case 'send':
      return `reorder-send-${followUp.payload.purchaseOrderId}${key ? `-${key}` : ''}`;
  }
}

export interface FollowUpJob {
  name: string;
  data: JobData;
  opts: JobsOptions & { jobId: string };
}

/** The bulk-add entry of a follow-up: its job's name and options, its id, its attempts. */
export function followUpJob(settings: Settings, followUp: FollowUp): FollowUpJob {
  const kind = kinds[followUp.kind];
  const delay = followUp.kind === 'send' ? followUp.delayMs : undefined;
  const priority = followUp.kind === 'delivery' ? deliveryPriority(followUp.payload.cause) : 0;
  return {
    name: kind.job.name,
    data: { payload: followUp.payload, meta: followUp.meta ?? { actor: 'system' } },
    opts: {
      ...kind.job.options,
      ...(kind.attempts ? { attempts: kind.attempts(settings) } : {}),
      ...(delay !== undefined ? { delay } : {}),
      ...(priority ? { priority } : {}),
      jobId: followUpJobId(followUp),
    },
  };
}

/** Adds follow-ups, one bulk add per queue; resolves with their job ids, in order. */
export async function addFollowUps(
  deps: { queues: Queues; config: Settings },
  followUps: FollowUp[],
): Promise<string[]> {
  const byQueue = new Map<AnyJob['queue'], FollowUpJob[]>();
  const jobs = followUps.map((followUp) => {
    const job = followUpJob(deps.config, followUp);
    const queue = kinds[followUp.kind].job.queue;
    byQueue.set(queue, [...(byQueue.get(queue) ?? []), job]);
    return job;
  });
  for (const [queue, entries] of byQueue) await deps.queues[queue].addBulk(entries);
  return jobs.map((job) => job.opts.jobId);
}

type AfterJob<N extends JobName> = (
  done: { payload: PayloadOf<JobNamed<N>>; result: ResultOf<JobNamed<N>> },
  settings: Pick<Config, 'REORDER_SEND_DELAY_MS'>,
) => FollowUp[];

/**
 * What a completed job queues next, chosen here for every job (Immich's `onDone`). The worker
 * adds these after the job's commit, and again on a retry from its stored result: the ids keep it
 * to one job each.
 */
const afterJob: { [N in JobName]?: AfterJob<N> } = {
  // A new or changed rule may be due already.
  'reorder-rule.set': ({ result }) => [
    { kind: 'check', payload: { ruleId: result.id }, key: `rule-v${result.version}` },
  ],
  // The new draft goes out once its send delay has passed.
  'reorder.check': ({ result }, settings) =>
    result.createdPurchaseOrderId
      ? [
          {
            kind: 'send',
            payload: { purchaseOrderId: result.createdPurchaseOrderId },
            delayMs: settings.REORDER_SEND_DELAY_MS,
          },
        ]
      : [],
  // A resend is a new round of attempts, named by the order's version so that it is queued once.
  'purchase-order.resolve': ({ payload, result }) =>
    payload.resolution.action === 'resend' && result.status === 'sent'
      ? [{ kind: 'send', payload: { purchaseOrderId: result.id }, key: `v${result.version}` }]
      : [],
};

export function followUpsAfter(
  settings: Pick<Config, 'REORDER_SEND_DELAY_MS'>,
  name: string,
  payload: unknown,
  result: unknown,
): FollowUp[] {
  const after = afterJob[name as JobName] as AfterJob<JobName> | undefined;
  return after ? after({ payload, result } as Parameters<AfterJob<JobName>>[0], settings) : [];
}
