import { type Job, Worker } from 'bullmq';
import { closeWithin } from '../entry.js';
import { failImageJobWithoutRun } from '../images/image-failures.js';
import { backoffStrategy } from '../queues/backoff.js';
import { publishFinished } from '../queues/finished-signal.js';
import { type JobData, type QueueName, queueNames } from '../queues/job.js';
import { readyJobs } from '../queues/queues.js';
import { redisKeys } from '../redis-keys.js';
import { createJobRunLog, type JobRunLog } from '../reports/job-runs.js';
import { imageHandlers } from './images.js';
import { inboundHandlers } from './inbound.js';
import { inventoryHandlers } from './inventory.js';
import { maintenanceHandlers } from './maintenance.js';
import { orderHandlers } from './orders.js';
import { createProcessor, type QueueHandlers, type WorkerDeps } from './processor.js';
import { productHandlers } from './products.js';
import { reorderHandlers } from './reorder.js';
import { keepSchedulers, registerSchedulers } from './schedulers.js';
import { watchWorkers } from './watchdog.js';
import { webhookHandlers } from './webhooks.js';

const handlersByQueue: { [Q in QueueName]: QueueHandlers<Q> } = {
  products: productHandlers,
  maintenance: maintenanceHandlers,
  images: imageHandlers,
  webhooks: webhookHandlers,
  inventory: inventoryHandlers,
  reorder: reorderHandlers,
  orders: orderHandlers,
  inbound: inboundHandlers,
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
 * What to do before BullMQ fails a job it never handed to the processor: one that stalled more
 * often than allowed (its workers died mid-job), so no handler saw its end.
 */
const beforeFailingUnrun: { [Q in QueueName]?: (deps: WorkerDeps, job: Job<JobData>) => Promise<void> } = {
  images: failImageJobWithoutRun,
};

/**
 * BullMQ's Worker with two changes, through its protected extension points:
 * - it moves no job to active once `close()` has begun. BullMQ 6 checks for closing only before
 *   its blocking wait: a job that lands while the blocking connection is being torn down was still
 *   taken (about one shutdown in twenty in tests/e2e/worker-shutdown.test.ts). A job left in
 *   `wait` goes to the next worker.
 * - a job it fails without running (stalled too often) first goes through `beforeFailingUnrun`,
 *   here in a live worker and before the job is failed: if this process dies too, the job stalls
 *   again and the next worker does it again. (The `failed` event would come after, and never in
 *   the dead processes that ran the job.)
 */
class PoolWorker extends Worker<JobData> {
  beforeFailingUnrun?: (job: Job<JobData>) => Promise<void>;

  protected override async moveToActive(token: string, name?: string): Promise<Job<JobData>> {
    // BullMQ itself answers `undefined` when no job is waiting; its type does not say so.
    if (this.closing) return undefined as unknown as Job<JobData>;
    return super.moveToActive(token, name);
  }

  protected override async handleFailed(
    err: Error,
    job: Job<JobData>,
    token: string,
    fetchNextCallback?: () => boolean,
    span?: Parameters<Worker['handleFailed']>[4],
  ): Promise<Job<JobData>> {
    if (job.deferredFailure && this.beforeFailingUnrun) await this.beforeFailingUnrun(job);
    return super.handleFailed(err, job, token, fetchNextCallback, span);
  }
}

/** The job-run log of each worker started here, flushed when it stops. */
const runLogs = new WeakMap<Worker, JobRunLog>();

/**
 * Starts one BullMQ Worker per queue, each with its configured concurrency. A job whose worker
 * died is taken over within lockDuration + stalledInterval (WORKER_LOCK_DURATION_MS +
 * WORKER_STALLED_INTERVAL_MS, 20 s by default). The returned array stays live: the watchdog
 * (./watchdog.ts) puts a fresh worker in the place of one that is stuck.
 */
export async function startWorkers(deps: WorkerDeps, queues: QueueName[]): Promise<Worker[]> {
  const { config, log } = deps;
  await registerSchedulers(deps.queues, config, queues);
  // The schedulers are kept, and the workers watched, for as long as these workers run: both stop
  // when the first one closes (a worker the watchdog replaces does not count).
  let stopWatching: () => void = () => undefined;
  const stopKeeping = keepSchedulers(deps, queues);
  const onClosing = () => {
    stopKeeping();
    stopWatching();
  };
  const runs = createJobRunLog(deps.db, deps.log);
  const build = (queue: QueueName) => {
    const worker = new PoolWorker(
      queue,
      createProcessor(deps, queue, handlersByQueue[queue] as QueueHandlers<typeof queue>, runs),
      {
        connection: deps.redis,
        prefix: redisKeys(config).queuePrefix(queue),
        concurrency: config.concurrency[queue],
        lockDuration: config.WORKER_LOCK_DURATION_MS,
        stalledInterval: config.workerStalledIntervalMs,
        settings: { backoffStrategy: backoffStrategy(config) },
      },
    );
    runLogs.set(worker, runs);
    const unrun = beforeFailingUnrun[queue];
    if (unrun) worker.beforeFailingUnrun = (job) => unrun(deps, job);
    // The finished signal only wakes `Prefer: wait` requests early; losing one costs latency, not correctness.
    const signal = (jobId: string | undefined) => {
      if (jobId) publishFinished(deps.redis, config.QUEUE_PREFIX, jobId).catch(() => undefined);
    };
    worker.on('completed', (job) => signal(job.id));
    worker.on('failed', (job) => signal(job?.id));
    worker.on('error', (err) => log.error({ err, queue }, 'worker error'));
    worker.once('closing', onClosing);
    log.info({ queue, concurrency: config.concurrency[queue] }, 'worker started');
    return worker;
  };
  const workers = queues.map(build);
  stopWatching = watchWorkers({
    workers,
    boundMs: config.WORKER_WATCHDOG_MS,
    log,
    runnable: (worker) => readyJobs(deps.queues[worker.name as QueueName]),
    replace(stuck, reason) {
      const queue = stuck.name as QueueName;
      stuck.off('closing', onClosing);
      deps.metrics.workerRecreated.inc({ queue, reason });
      // Its active jobs may still finish; if not, they are taken over once their locks expire.
      void stopWorkers([stuck], config.SHUTDOWN_TIMEOUT_MS).catch((err: unknown) =>
        log.error({ err, queue }, 'closing a stuck worker failed'),
      );
      return build(queue);
    },
  });
  return workers;
}

/**
 * Stops taking jobs and lets active ones finish, for at most `timeoutMs`; then closes by force
 * (those jobs are picked up again by another worker once their lock expires). A forced close can
 * itself hang (a cluster blocking connection waiting for a `ready` that never comes: ./watchdog.ts);
 * after another `timeoutMs` each worker's own blocking connection is dropped and the close left
 * behind, so a shutdown always ends. Resolves true when every active job finished in time.
 */
export async function stopWorkers(workers: Worker[], timeoutMs: number): Promise<boolean> {
  const graceful = await closeWithin(Promise.all(workers.map((w) => w.close())), timeoutMs);
  const closed = graceful || (await closeWithin(Promise.all(workers.map((w) => w.close(true))), timeoutMs));
  if (!closed) {
    for (const worker of workers) {
      // The blocking client is the worker's own duplicate; the shared connection stays up.
      const blocking = (worker.backend as { blockingClient?: Promise<{ disconnect(): void }> })
        .blockingClient;
      void blocking?.then(
        (client) => client.disconnect(),
        () => undefined,
      );
    }
  }
  // The attempts that finished while closing go to the jobs report before the pools close.
  const logs = new Set(workers.map((w) => runLogs.get(w)));
  await closeWithin(Promise.all([...logs].map((log) => log?.flush())), timeoutMs);
  return graceful;
}
