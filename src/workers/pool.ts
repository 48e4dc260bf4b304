import { type AdvancedOptions, type Job, Worker } from 'bullmq';
import type { Config } from '../config.js';
import { publishFinished } from '../queues/finished-signal.js';
import { type QueueName, queueNames } from '../queues/job.js';
import { imageHandlers } from './images.js';
import { inventoryHandlers } from './inventory.js';
import { keepSchedulers, maintenanceHandlers, registerSchedulers } from './maintenance.js';
import { createProcessor, type QueueHandlers, type WorkerDeps } from './processor.js';
import { productHandlers } from './products.js';
import { webhookHandlers, webhookWorkerSettings } from './webhooks.js';

const handlersByQueue: { [Q in QueueName]: QueueHandlers<Q> } = {
  products: productHandlers,
  maintenance: maintenanceHandlers,
  images: imageHandlers,
  webhooks: webhookHandlers,
  inventory: inventoryHandlers,
};

/** Queue-specific worker settings (custom backoff strategies). */
const settingsByQueue: { [Q in QueueName]?: (config: Config) => AdvancedOptions } = {
  webhooks: webhookWorkerSettings,
};

export function parseQueueList(list: string | undefined): QueueName[] {
  if (!list || list === 'all') return [...queueNames];
  const names = list
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  const unknown = names.filter((n) => !(queueNames as readonly string[]).includes(n));
  if (unknown.length > 0) {
    throw new Error(`Unknown queue(s): ${unknown.join(', ')}. Known queues: ${queueNames.join(', ')}`);
  }
  return names as QueueName[];
}

/**
 * A Worker that moves no job to active once `close()` has begun. BullMQ 6 checks for closing only
 * before its blocking wait: a job that lands while the blocking connection is being torn down was
 * still taken (about one shutdown in twenty in tests/e2e/worker-shutdown.test.ts). `moveToActive` is
 * BullMQ's protected extension point for fetching; a job left in `wait` goes to the next worker.
 */
class ShutdownSafeWorker extends Worker {
  protected override async moveToActive(token: string, name?: string): Promise<Job> {
    // BullMQ itself answers `undefined` when no job is waiting; its type does not say so.
    if (this.closing) return undefined as unknown as Job;
    return super.moveToActive(token, name);
  }
}

/** Starts one BullMQ Worker per queue, each with its configured concurrency. */
export async function startWorkers(deps: WorkerDeps, queues: QueueName[]): Promise<Worker[]> {
  const { config, log } = deps;
  await registerSchedulers(deps.queues, config, queues);
  const workers = queues.map((queue) => {
    const worker = new ShutdownSafeWorker(
      queue,
      createProcessor(deps, queue, handlersByQueue[queue] as QueueHandlers<typeof queue>),
      {
        connection: deps.redis,
        prefix: config.QUEUE_PREFIX,
        concurrency: config.concurrency[queue],
        lockDuration: config.WORKER_LOCK_DURATION_MS,
        stalledInterval: config.WORKER_LOCK_DURATION_MS,
        settings: settingsByQueue[queue]?.(config),
      },
    );
    // The finished signal only wakes `Prefer: wait` requests early; losing one costs latency, not correctness.
    const signal = (jobId: string | undefined) => {
      if (jobId) publishFinished(deps.redis, config.QUEUE_PREFIX, jobId).catch(() => undefined);
    };
    worker.on('completed', (job) => signal(job.id));
    worker.on('failed', (job) => signal(job?.id));
    worker.on('error', (err) => log.error({ err, queue }, 'worker error'));
    log.info({ queue, concurrency: config.concurrency[queue] }, 'worker started');
    return worker;
  });
  // The schedulers are kept for as long as these workers run: stopped when the first one closes.
  const stopKeeping = keepSchedulers(deps, queues);
  for (const worker of workers) worker.once('closing', stopKeeping);
  return workers;
}

/**
 * Stops taking jobs and lets active ones finish, for at most `timeoutMs`; then closes by force
 * (those jobs are picked up again by another worker once their lock expires). Resolves true
 * when every active job finished in time.
 */
export async function stopWorkers(workers: Worker[], timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const graceful = Promise.all(workers.map((w) => w.close())).then(() => true);
  const timedOut = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  const finished = await Promise.race([graceful, timedOut]);
  clearTimeout(timer);
  if (!finished) await Promise.all(workers.map((w) => w.close(true)));
  return finished;
}
