import type { Worker } from 'bullmq';
import type { Logger } from '../log.js';

/** Why the watchdog replaced a worker (the `reason` label of stockflow_worker_recreated_total). */
export type RecreateReason = 'blocking_connection_not_ready' | 'fetch_loop_stopped';

interface Watched {
  /** Since when the worker has been unhealthy, and why; undefined while it is healthy. */
  since?: number;
  reason?: RecreateReason;
  /** The worker's blocking client once BullMQ has created it (its `status` is read every check). */
  blocking?: { status: string };
  asked?: boolean;
}

/**
 * A worker's blocking connection (the one BullMQ waits on for jobs) can stay down after Redis
 * comes back: ioredis parks it in `reconnecting`/`connecting` (BullMQ issues #4585, #4378, #3185),
 * or the fetch loop ends after an error (#648). The queue then keeps accepting jobs that no worker
 * of this process takes. Every `checkMs` this looks at each worker; one whose blocking connection
 * has not been `ready` (or whose loop has stopped) for longer than `boundMs` is handed to
 * `replace`, which closes it and starts a fresh one for the same queue. `workers` is read live:
 * `replace` puts the new worker in its place. Returns the function that stops watching.
 */
export function watchWorkers(options: {
  workers: Worker[];
  boundMs: number;
  checkMs?: number;
  log: Logger;
  replace(index: number, reason: RecreateReason, notReadyMs: number): void;
}): () => void {
  const { workers, boundMs, log } = options;
  const state = new WeakMap<Worker, Watched>();
  const check = () => {
    const now = Date.now();
    workers.forEach((worker, index) => {
      if (worker.closing) return;
      let watched = state.get(worker);
      if (!watched) {
        watched = {};
        state.set(worker, watched);
      }
      const entry = watched;
      if (!entry.asked) {
        entry.asked = true;
        // Resolves once BullMQ has connected it the first time; until then it is not ready.
        const client = (worker.backend as { blockingClient?: Promise<{ status: string }> }).blockingClient;
        client?.then(
          (c) => {
            entry.blocking = c;
          },
          () => undefined,
        );
      }
      const reason: RecreateReason | undefined = !worker.isRunning()
        ? 'fetch_loop_stopped'
        : entry.blocking?.status !== 'ready'
          ? 'blocking_connection_not_ready'
          : undefined;
      if (!reason) {
        entry.since = undefined;
        return;
      }
      if (entry.since === undefined || entry.reason !== reason) {
        entry.since = now;
        entry.reason = reason;
        return;
      }
      if (now - entry.since <= boundMs) return;
      log.warn(
        { queue: worker.name, reason, notReadyMs: now - entry.since, status: entry.blocking?.status },
        'worker stuck: closing it and starting a new one',
      );
      options.replace(index, reason, now - entry.since);
    });
  };
  const timer = setInterval(check, options.checkMs ?? Math.min(1000, Math.max(50, boundMs / 4)));
  timer.unref();
  return () => clearInterval(timer);
}
