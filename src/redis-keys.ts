import { createRequire } from 'node:module';
import type { Config } from './config.js';
import { ConfigError } from './errors/config-error.js';
import { type QueueName, queueNames } from './queues/job.js';

/**
 * Where Stockflow's Redis keys live, and the start-up check that every command touching several
 * keys at once finds them in one hash slot (Redis Cluster refuses it otherwise: CROSSSLOT).
 *
 * On one Redis (or sentinels) every key is under QUEUE_PREFIX, as it always was. With
 * REDIS_CLUSTER_NODES the keys that are used together get a hash tag of their own:
 * - each queue: BullMQ's prefix `{<prefix>:<queue>}`, so one queue's keys (its Lua scripts take
 *   many) share a slot and the queues spread over the masters (BullMQ's "Redis Cluster" pattern);
 * - `{<prefix>:cache}`: the read cache's epoch and generations (one script reads or bumps several)
 *   and its entries (bentocache deletes an invalidation's entries in one pipeline);
 * - `{<prefix>:ops}`: the alert inputs (one MGET of every failure bucket, one pipeline of latency
 *   windows).
 * Keys used one at a time (idempotency and inbound claims, rate-limit counters, webhook pacing)
 * carry no tag and spread over every slot. Channels have no slot: PUBLISH reaches every node.
 */
export interface RedisKeys {
  /** BullMQ's `prefix` option of a queue. */
  queuePrefix(queue: QueueName): string;
  /** Single keys: claims, counters (`<prefix>:idempotency:…`). */
  plain: string;
  /** The read cache's generations and entries. */
  cache: string;
  /** The alert inputs in Redis (failure buckets, latency windows). */
  ops: string;
}

export function redisKeys(config: Pick<Config, 'QUEUE_PREFIX' | 'REDIS_CLUSTER_NODES'>): RedisKeys {
  const prefix = config.QUEUE_PREFIX;
  const tag = config.REDIS_CLUSTER_NODES
    ? (name: string) => `{${prefix}:${name}}`
    : (name: string) => `${prefix}:${name}`;
  return {
    queuePrefix: config.REDIS_CLUSTER_NODES ? (queue) => `{${prefix}:${queue}}` : () => prefix,
    plain: prefix,
    cache: tag('cache'),
    ops: tag('ops'),
  };
}

// The keys of each multi-key command, built here so the check below sees exactly what runs.

/** The read cache's stamp scripts (src/cache/stamps.ts): the epoch first, then one generation per dependency. */
export const stampKeys = (cache: string, dependencies: readonly string[]) => [
  `${cache}:epoch`,
  ...dependencies.map((d) => `${cache}:gen:${d}`),
];

/** A 10-second bucket of jobs failed for good (src/ops/failure-counts.ts, read with one MGET). */
export const failureBucketKey = (ops: string, queue: string, bucket: number) =>
  `${ops}:failures:${queue}:${bucket}`;

/** A minute of pooled route latencies (src/ops/latency-windows.ts, read in one pipeline). */
export const latencyWindowKey = (ops: string, minute: number) => `${ops}:latency:${minute}`;

const calculateSlot = createRequire(import.meta.url)('cluster-key-slot') as (key: string) => number;

/** The hash slot of a key (CRC16 of its hash tag, or of the whole key), as `CLUSTER KEYSLOT` answers. */
export const keySlot = (key: string): number => calculateSlot(key);

/** Keys one command (a Lua script, MGET, a MULTI, a cluster pipeline) touches together. */
export interface KeyGroup {
  command: string;
  keys: string[];
}

/** Every multi-key command of ours, with sample keys of each pattern (BullMQ's own scripts excepted: its prefix is checked). */
export function keyGroups(keys: RedisKeys): KeyGroup[] {
  const now = 1_700_000_000_000;
  return [
    {
      command: 'cache stamp scripts (stockflowStampRead, stockflowStampBump)',
      keys: stampKeys(keys.cache, ['product:SKU-1', 'stock:SKU-2', 'product-lists', 'locations']),
    },
    {
      command: 'read cache deleteMany pipeline (bentocache L2)',
      keys: ['product:SKU-1', 'stock:SKU-2', 'product_list:abc', 'reads'].map((k) => `${keys.cache}:${k}`),
    },
    {
      command: 'job_failures MGET (failuresInLastMinute)',
      keys: queueNames.flatMap((queue) =>
        [0, 1, 5].map((i) => failureBucketKey(keys.ops, queue, Math.floor(now / 10_000) - i)),
      ),
    },
    {
      command: 'route_latency pipeline (readRouteLatencies)',
      keys: [0, 1, 4].map((i) => latencyWindowKey(keys.ops, Math.floor(now / 60_000) - i)),
    },
    // The delivery sweep reads job hashes of one queue in one pipeline; BullMQ's scripts take the
    // queue's wait list, meta and job hashes together.
    ...queueNames.map((queue) => ({
      command: `queue ${queue} (BullMQ scripts, delivery sweep pipeline)`,
      keys: ['wait', 'meta', 'events', `${queue}-0123456789abcdef`, 'repeat:relay-outbox'].map(
        (k) => `${keys.queuePrefix(queue)}:${queue}:${k}`,
      ),
    })),
  ];
}

/** The groups whose keys do not share one slot, each with the slots found. */
export function slotMismatches(groups: KeyGroup[]): string[] {
  return groups.flatMap(({ command, keys }) => {
    const slots = new Map<number, string>();
    for (const key of keys) if (!slots.has(keySlot(key))) slots.set(keySlot(key), key);
    if (slots.size <= 1) return [];
    const found = [...slots].map(([slot, key]) => `${key} → slot ${slot}`).join(', ');
    return [`${command}: keys in ${slots.size} hash slots (${found})`];
  });
}

/**
 * The start-up self-test on Redis Cluster: refuses to start (ConfigError) when a command of ours
 * would touch keys in more than one slot, which the cluster would refuse with CROSSSLOT.
 */
export function checkKeySlots(groups: KeyGroup[]): void {
  const problems = slotMismatches(groups);
  if (problems.length > 0) {
    throw new ConfigError(
      problems.map((p) => `REDIS_CLUSTER_NODES: a multi-key command would fail with CROSSSLOT: ${p}`),
    );
  }
}
