import type { Job } from 'bullmq';
import { failureFromReason, type JobFailure } from '../errors/domain-error.js';
import type { JobData } from './job.js';
import { type Queues, queueOfJobId } from './queues.js';

export type JobStatusState = 'waiting' | 'delayed' | 'active' | 'completed' | 'failed';

export interface JobStatus {
  id: string;
  queue: string;
  name: string;
  state: JobStatusState;
  attemptsMade: number;
  progress: unknown;
  result: unknown;
  error: JobFailure | null;
  createdAt: string;
  processedAt: string | null;
  finishedAt: string | null;
}

const iso = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : null);

function publicState(state: string): JobStatusState {
  switch (state) {
    case 'completed':
    case 'failed':
    case 'active':
    case 'delayed':
      return state;
    default:
      // prioritized, waiting-children and waiting all mean "not started yet" to the PMS.
      return 'waiting';
  }
}

/** A failure the PMS may read: the domain error a worker recorded, or a generic one (internals stay in logs). */
function failureOf(job: Job<JobData>): JobFailure {
  return (
    job.data.failure ??
    failureFromReason(job.failedReason) ?? {
      code: 'job_failed',
      message: `The job failed after ${job.attemptsMade} attempt(s); operators can see why in the queue dashboard`,
      details: {},
    }
  );
}

export async function getJobStatus(queues: Queues, id: string): Promise<JobStatus | undefined> {
  const queueName = queueOfJobId(id);
  if (!queueName) return undefined;
  const queue = queues[queueName];
  let job = (await queue.getJob(id)) as Job<JobData> | undefined;
  if (!job) return undefined;
  let state = publicState(await job.getState());
  // The job hash and its state are two reads: a job that finished in between has a final state
  // but no result yet in the copy we hold, so read it again.
  for (let i = 0; i < 3 && (state === 'completed' || state === 'failed') && !job.finishedOn; i++) {
    job = (await queue.getJob(id)) as Job<JobData> | undefined;
    if (!job) return undefined;
    state = publicState(await job.getState());
  }
  return {
    id,
    queue: queueName,
    name: job.name,
    state,
    attemptsMade: job.attemptsMade,
    progress: job.progress,
    result: state === 'completed' ? (job.returnvalue ?? null) : null,
    error: state === 'failed' ? failureOf(job) : null,
    createdAt: new Date(job.timestamp).toISOString(),
    processedAt: iso(job.processedOn),
    finishedAt: iso(job.finishedOn),
  };
}
