import type { Config } from '../config.js';
import type { RedisClient } from '../connections.js';
import type { Logger } from '../log.js';
import { schedulersOf } from '../queues/catalog.js';
import type { QueueName, Scheduler } from '../queues/job.js';
import type { Queues } from '../queues/queues.js';

const upsert = (queues: Queues, s: Scheduler) =>
  queues[s.queue].upsertJobScheduler(s.id, { every: s.every }, { name: s.name, data: s.data, opts: s.opts });

const schedulersRunning = (config: Config, running: QueueName[]) =>
  schedulersOf(config).filter((s) => running.includes(s.queue));

/**
 * Upserts the schedulers of these queues, at worker start, and queues the runs they ask for at
 * start. Upserting is idempotent: restarts and several such processes keep one scheduler per id
 * (and a changed interval takes effect).
 */
export async function registerSchedulers(
  queues: Queues,
  config: Config,
  running: QueueName[],
): Promise<void> {
  const schedulers = schedulersRunning(config, running);
  for (const s of schedulers) await upsert(queues, s);
  for (const s of schedulers) if (s.runAtStart) await queues[s.queue].add(s.name, s.data, s.opts);
}

/** Re-creates the schedulers of these queues that Redis no longer has; returns their ids. */
async function restoreMissingSchedulers(
  queues: Queues,
  config: Config,
  running: QueueName[],
): Promise<string[]> {
  const restored: string[] = [];
  for (const s of schedulersRunning(config, running)) {
    if (await queues[s.queue].getJobScheduler(s.id)) continue;
    await upsert(queues, s);
    restored.push(s.id);
  }
  return restored;
}

/**
 * Keeps the schedulers alive while the workers run: Redis may lose them (a restart without
 * persistence, a flush, a failover to an empty replica) and nothing else would bring them back
 * before the next deploy. Checks every SCHEDULER_CHECK_INTERVAL_MS and whenever the worker
 * connection is ready again after a reconnect. Returns the function that stops it.
 */
export function keepSchedulers(
  deps: { queues: Queues; config: Config; log: Logger; redis: RedisClient },
  running: QueueName[],
): () => void {
  const { queues, config, log, redis } = deps;
  let checking: Promise<void> | undefined;
  let stopped = false;
  const check = () => {
    if (stopped || checking) return;
    checking = restoreMissingSchedulers(queues, config, running)
      .then((restored) => {
        if (restored.length > 0)
          log.warn({ schedulers: restored }, 'job schedulers were missing: re-created');
      })
      // Redis is away: the next tick or the reconnect tries again.
      .catch((err: unknown) => log.debug({ err }, 'could not check the job schedulers'))
      .finally(() => {
        checking = undefined;
      });
  };
  const timer = setInterval(check, config.SCHEDULER_CHECK_INTERVAL_MS);
  timer.unref();
  redis.on('ready', check);
  return () => {
    stopped = true;
    clearInterval(timer);
    redis.off('ready', check);
  };
}
