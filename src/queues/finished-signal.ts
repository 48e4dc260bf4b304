import type { RedisClient } from '../connections.js';

/**
 * A wake-up call when a job finishes, so `Prefer: wait` answers promptly. It is only a hint: a
 * waiter always re-reads the job's state, and polls as well, so a lost message costs latency,
 * never a wrong or missing answer.
 */
export const finishedChannel = (prefix: string) => `${prefix}:jobs:finished`;

export async function publishFinished(redis: RedisClient, prefix: string, jobId: string): Promise<void> {
  await redis.publish(finishedChannel(prefix), jobId);
}

export interface FinishedWatch {
  /** Resolves at once if a signal came since the last call, else on the next signal or after `ms`. */
  next(ms: number): Promise<void>;
  stop(): void;
}

export interface FinishedListener {
  /** Starts listening for one job before its state is read, so no signal can slip in between. */
  watch(jobId: string): FinishedWatch;
  close(): Promise<void>;
}

/** Subscribes a connection (which must be dedicated to subscriptions) to the finished channel. */
export async function listenForFinished(subscriber: RedisClient, prefix: string): Promise<FinishedListener> {
  const watchers = new Map<string, Set<() => void>>();
  const channel = finishedChannel(prefix);
  const onMessage = (from: string, jobId: string) => {
    if (from !== channel) return;
    for (const notify of watchers.get(jobId) ?? []) notify();
  };
  subscriber.on('message', onMessage);
  await subscriber.subscribe(channel);
  return {
    watch(jobId) {
      let signalled = false;
      let wake: (() => void) | undefined;
      const notify = () => {
        signalled = true;
        wake?.();
      };
      const set = watchers.get(jobId) ?? new Set();
      set.add(notify);
      watchers.set(jobId, set);
      return {
        next(ms) {
          if (signalled) {
            signalled = false;
            return Promise.resolve();
          }
          return new Promise<void>((resolve) => {
            const timer = setTimeout(finish, ms);
            function finish() {
              clearTimeout(timer);
              wake = undefined;
              signalled = false;
              resolve();
            }
            wake = finish;
          });
        },
        stop() {
          set.delete(notify);
          if (set.size === 0) watchers.delete(jobId);
          wake?.();
        },
      };
    },
    async close() {
      subscriber.off('message', onMessage);
      await subscriber.unsubscribe(channel).catch(() => undefined);
    },
  };
}
