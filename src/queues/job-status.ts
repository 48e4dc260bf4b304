import type { Job } from 'bullmq';
import type { JobFailure } from '../errors.js';
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
    job.data.failure ?? {
      code: 'job_failed',
      message: `The job failed after ${job.attemptsMade} attempt(s); operators can see why in the queue dashboard`,
      details: {},
    }
  );
}

export async function getJobStatus(queues: Queues, id: string): Promise<JobStatus | undefined> {
  const queueName = queueOfJobId(id);
  if (!queueName) return undefined;
  // State first, then the job: a job seen finished is then read with its final data (attempts,
  // recorded failure). Read the other way round, a job finishing in between looks failed with
  // the data it had while active.
  const rawState = await queues[queueName].getJobState(id);
  if (rawState === 'unknown') return undefined;
  const job = (await queues[queueName].getJob(id)) as Job<JobData> | undefined;
  if (!job) return undefined;
  const state = publicState(rawState);
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
