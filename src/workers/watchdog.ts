import { setTimeout as delay } from 'node:timers/promises';
import type { Worker } from 'bullmq';
import type { Logger } from '../log.js';

/** Why the watchdog replaced a worker (the `reason` label of stockflow_worker_recreated_total). */
export type RecreateReason = 'blocking_connection_not_ready' | 'fetch_loop_stopped' | 'no_progress';

interface Watched {
  /** Since when the worker has been unhealthy, and why; undefined while it is healthy. */
  since?: number;
  reason?: RecreateReason;
  /** The worker's blocking client once BullMQ has created it (its `status` is read every check). */
  blocking?: { status: string };
  /** Jobs this worker has started and not yet finished, and whether one started since the last check. */
  active: Set<string | undefined>;
  started: boolean;
}

/**
 * A worker can stop taking jobs while the process looks healthy:
 * - its blocking connection (the one BullMQ waits on for jobs) stays down after Redis comes back:
 *   ioredis parks it in `reconnecting`/`connecting` (BullMQ issues #4585, #4378, #3185);
 * - its fetch loop ends after an error (#648);
 * - its fetch loop hangs with every connection `ready`: on a Redis Cluster, after a master fails
 *   over, BullMQ's reset of the blocking connection can wait for a `ready` event that never comes
 *   (seen here 1 run in 3 of tests/e2e/redis-cluster-failover.test.ts, BullMQ 6.7, ioredis 6).
 * The queue then keeps accepting jobs that no worker of this process takes. Every `checkMs` this
 * looks at each worker; one that has been in one of these states for longer than `boundMs` is
 * handed to `replace`, which starts a fresh worker for the same queue to take its place. The third
 * state is seen by its effect (`no_progress`): jobs ready to run (`runnable`), a free slot, and no
 * job started, at every check across the bound. `workers` is updated in place with each
 * replacement. Returns the function that stops watching.
 */
export function watchWorkers(options: {
  workers: Worker[];
  boundMs: number;
  checkMs?: number;
  log: Logger;
  /** Jobs of the worker's queue ready to run now (waiting or prioritized; 0 while the queue is paused). */
  runnable(worker: Worker): Promise<number>;
  /** Starts a fresh worker for the queue of `stuck` and answers it; the watchdog puts it in its place. */
  replace(stuck: Worker, reason: RecreateReason, notReadyMs: number): Worker;
}): () => void {
  const { workers, boundMs, log } = options;
  const state = new WeakMap<Worker, Watched>();
  const watch = (worker: Worker): Watched => {
    const entry: Watched = { active: new Set(), started: false };
    state.set(worker, entry);
    // Resolves once BullMQ has connected it the first time; until then it is not ready.
    const client = (worker.backend as { blockingClient?: Promise<{ status: string }> }).blockingClient;
    client?.then(
      (c) => {
        entry.blocking = c;
      },
      () => undefined,
    );
    worker.on('active', (job) => {
      entry.active.add(job.id);
      entry.started = true;
    });
    // By id: BullMQ also reports as failed a stalled job this worker never started.
    const finished = (job: { id?: string } | undefined) => {
      entry.active.delete(job?.id);
    };
    worker.on('completed', finished);
    worker.on('failed', finished);
    return entry;
  };
  /** The state a worker is in now, or undefined when it is healthy. */
  const diagnose = async (worker: Worker, entry: Watched): Promise<RecreateReason | undefined> => {
    if (!worker.isRunning()) return 'fetch_loop_stopped';
    if (entry.blocking?.status !== 'ready') return 'blocking_connection_not_ready';
    const started = entry.started;
    entry.started = false;
    if (started || entry.active.size >= worker.concurrency || worker.isPaused()) return undefined;
    // Asked only of a worker that started nothing since the last check (an idle queue costs one
    // count per check, a busy one none). A count that does not answer proves nothing.
    const runnable = await Promise.race([
      options.runnable(worker).catch(() => 0),
      delay(Math.min(boundMs, 1000), 0, { ref: false }),
    ]);
    return runnable > 0 ? 'no_progress' : undefined;
  };
  let checking = false;
  const check = async () => {
    const now = Date.now();
    for (const [index, worker] of workers.entries()) {
      if (worker.closing) continue;
      const entry = state.get(worker) ?? watch(worker);
      const reason = await diagnose(worker, entry);
      if (!reason) {
        entry.since = undefined;
        continue;
      }
      if (entry.since === undefined || entry.reason !== reason) {
        entry.since = now;
        entry.reason = reason;
        continue;
      }
      if (now - entry.since <= boundMs) continue;
      log.warn(
        { queue: worker.name, reason, notReadyMs: now - entry.since, status: entry.blocking?.status },
        'worker stuck: closing it and starting a new one',
      );
      workers[index] = options.replace(worker, reason, now - entry.since);
      watch(workers[index]);
    }
  };
  // From the start: a job that became active before its worker was watched would hide a busy slot.
  for (const worker of workers) watch(worker);
  const timer = setInterval(
    () => {
      // A check waits on Redis for the counts; one at a time, so a slow link cannot pile them up.
      if (checking) return;
      checking = true;
      void check().finally(() => {
        checking = false;
      });
    },
    options.checkMs ?? Math.min(1000, Math.max(50, boundMs / 4)),
  );
  timer.unref();
  return () => clearInterval(timer);
}
