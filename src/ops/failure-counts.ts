import type { RedisClient } from '../connections.js';
import { failureBucketKey as bucketKey } from '../redis-keys.js';

/**
 * Jobs failed for good, per queue, in 10-second buckets in Redis: the job_failures alert reads
 * the last minute across every worker process. `ops`: the alert inputs' keys (`redisKeys(config).ops`).
 */
const bucketMs = 10_000;
const bucketsPerMinute = 6;

export async function recordFailure(
  redis: RedisClient,
  ops: string,
  queue: string,
  now = Date.now(),
): Promise<void> {
  const key = bucketKey(ops, queue, Math.floor(now / bucketMs));
  await redis
    .multi()
    .incr(key)
    .pexpire(key, 3 * bucketsPerMinute * bucketMs)
    .exec();
}

/** Failures per queue over the minute ending at `now`. */
export async function failuresInLastMinute(
  redis: RedisClient,
  ops: string,
  queues: readonly string[],
  now = Date.now(),
): Promise<Map<string, number>> {
  const last = Math.floor(now / bucketMs);
  const keys = queues.flatMap((queue) =>
    Array.from({ length: bucketsPerMinute }, (_, i) => bucketKey(ops, queue, last - i)),
  );
  const values = keys.length ? await redis.mget(...keys) : [];
  return new Map(
    queues.map((queue, q) => [
      queue,
      values
        .slice(q * bucketsPerMinute, (q + 1) * bucketsPerMinute)
        .reduce((sum, v) => sum + Number(v ?? 0), 0),
    ]),
  );
}
