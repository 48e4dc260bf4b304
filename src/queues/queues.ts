import { Queue } from 'bullmq';
import type { Config } from '../config.js';
import type { RedisClient } from '../connections.js';
import { redisKeys } from '../redis-keys.js';
import { type QueueName, queueNames } from './job.js';

export type Queues = Record<QueueName, Queue>;

type QueueSettings = Pick<
  Config,
  'QUEUE_PREFIX' | 'REDIS_CLUSTER_NODES' | 'JOB_ATTEMPTS' | 'JOB_BACKOFF_MS' | 'JOB_RETENTION_SECONDS'
>;

/**
 * One BullMQ Queue per queue name, sharing one producer connection, each under its prefix (on a
 * cluster, a hash tag of its own: src/redis-keys.ts). Finished jobs are kept by
 * age so their status stays answerable for the retention period.
 */
export function createQueues(connection: RedisClient, config: QueueSettings): Queues {
  const entries = queueNames.map((name) => [
    name,
    new Queue(name, {
      connection,
      prefix: redisKeys(config).queuePrefix(name),
      defaultJobOptions: {
        attempts: config.JOB_ATTEMPTS,
        backoff: { type: 'exponential', delay: config.JOB_BACKOFF_MS },
        removeOnComplete: { age: config.JOB_RETENTION_SECONDS },
        removeOnFail: { age: config.JOB_RETENTION_SECONDS },
      },
    }),
  ]);
  return Object.fromEntries(entries) as Queues;
}

/** Jobs of `queue` ready to run now: waiting or prioritized; 0 while the queue is paused. */
export async function readyJobs(queue: Queue): Promise<number> {
  return (await queue.isPaused()) ? 0 : queue.getJobCountByTypes('waiting', 'prioritized');
}

export async function closeQueues(queues: Queues): Promise<void> {
  await Promise.all(Object.values(queues).map((queue) => queue.close()));
}

/** Job ids carry their queue (`products-…`) so a status lookup needs no search across queues. */
export function queueOfJobId(id: string): QueueName | undefined {
  const name = id.slice(0, id.indexOf('-'));
  return (queueNames as readonly string[]).includes(name) ? (name as QueueName) : undefined;
}
