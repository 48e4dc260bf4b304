import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.js';
import { redisClusterOptions, redisOptions, redisTargetOf } from '../../src/connections.js';
import { ConfigError } from '../../src/errors/config-error.js';
import { queueNames } from '../../src/queues/job.js';
import {
  checkKeySlots,
  keyGroups,
  keySlot,
  redisKeys,
  slotMismatches,
  stampKeys,
} from '../../src/redis-keys.js';

const single = parseConfig({ QUEUE_PREFIX: 'stockflow' });
const cluster = parseConfig({
  QUEUE_PREFIX: 'stockflow',
  REDIS_URL: 'rediss://app:s3cret@127.0.0.1:6379',
  REDIS_CLUSTER_NODES: '127.0.0.1:7000, 127.0.0.1:7001,[::1]:7002',
});

describe('key slots (offline CLUSTER KEYSLOT)', () => {
  it('computes the slots Redis documents', () => {
    expect(keySlot('foo')).toBe(12182);
    expect(keySlot('somekey')).toBe(11058);
    expect(keySlot('{user1000}.following')).toBe(keySlot('{user1000}.followers'));
  });

  it('finds every multi-key command of ours in one slot on a cluster, so the start-up check passes', () => {
    const groups = keyGroups(redisKeys(cluster));
    expect(groups.length).toBeGreaterThan(queueNames.length);
    expect(slotMismatches(groups)).toEqual([]);
    expect(() => checkKeySlots(groups)).not.toThrow();
  });

  it('gives each queue a slot of its own, so the queues spread over the masters', () => {
    const keys = redisKeys(cluster);
    expect(keys.queuePrefix('inventory')).toBe('{stockflow:inventory}');
    const slots = new Set(queueNames.map((queue) => keySlot(`${keys.queuePrefix(queue)}:${queue}:wait`)));
    expect(slots.size).toBe(queueNames.length);
  });

  it('refuses to start on a key pattern that would fail with CROSSSLOT, naming the command and the keys', () => {
    // The cache namespace without its hash tag: the epoch and the generations fall in different slots.
    const untagged = { ...redisKeys(cluster), cache: 'stockflow:cache' };
    const problems = slotMismatches(keyGroups(untagged));
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(
      /^cache stamp scripts .*: keys in \d+ hash slots \(stockflow:cache:epoch → slot \d+/,
    );
    expect(() => checkKeySlots(keyGroups(untagged))).toThrow(ConfigError);
    expect(() => checkKeySlots(keyGroups(untagged))).toThrow(
      /REDIS_CLUSTER_NODES: .*CROSSSLOT.*cache stamp scripts/,
    );
    // So would a single BullMQ prefix without braces for every queue.
    const oneUntaggedPrefix = { ...redisKeys(cluster), queuePrefix: () => 'stockflow' };
    expect(slotMismatches(keyGroups(oneUntaggedPrefix))).toHaveLength(queueNames.length);
  });

  it('keeps the key names of one Redis as they were', () => {
    const keys = redisKeys(single);
    expect(keys.queuePrefix('inventory')).toBe('stockflow');
    expect(stampKeys(keys.cache, ['stock:A'])).toEqual([
      'stockflow:cache:epoch',
      'stockflow:cache:gen:stock:A',
    ]);
    expect(keys.ops).toBe('stockflow:ops');
  });
});

describe('REDIS_CLUSTER_NODES', () => {
  it('parses the seed nodes and refuses braces in QUEUE_PREFIX or sentinels beside it', () => {
    expect(cluster.REDIS_CLUSTER_NODES).toEqual([
      { host: '127.0.0.1', port: 7000 },
      { host: '127.0.0.1', port: 7001 },
      { host: '::1', port: 7002 },
    ]);
    expect(() => parseConfig({ REDIS_CLUSTER_NODES: '127.0.0.1' })).toThrow(/REDIS_CLUSTER_NODES/);
    expect(() => parseConfig({ REDIS_CLUSTER_NODES: '127.0.0.1:7000', QUEUE_PREFIX: '{sf}' })).toThrow(
      /QUEUE_PREFIX: must not contain/,
    );
    expect(() =>
      parseConfig({
        REDIS_CLUSTER_NODES: '127.0.0.1:7000',
        REDIS_SENTINELS: '127.0.0.1:26379',
        REDIS_SENTINEL_NAME: 'm',
      }),
    ).toThrow(/either REDIS_CLUSTER_NODES or REDIS_SENTINELS/);
  });

  it('makes every role a cluster client with the role behaviour of one Redis and REDIS_URL credentials', () => {
    for (const role of ['worker', 'producer', 'subscriber', 'cache', 'cache-bus'] as const) {
      const { options } = redisClusterOptions(cluster, role)!;
      const single = redisOptions(cluster, role).options;
      expect(options.enableOfflineQueue).toBe(single.enableOfflineQueue);
      expect(options.redisOptions).toMatchObject({
        maxRetriesPerRequest: single.maxRetriesPerRequest,
        username: 'app',
        password: 's3cret',
        tls: {},
      });
    }
    // BullMQ's blocking connections need maxRetriesPerRequest null: the worker role has it.
    expect(redisClusterOptions(cluster, 'worker')!.options.redisOptions?.maxRetriesPerRequest).toBeNull();
    expect(redisClusterOptions(cluster, 'producer')!.options.redisOptions?.commandTimeout).toBe(5000);
    expect(redisTargetOf(cluster, 'worker')).toBe('cluster 127.0.0.1:7000,127.0.0.1:7001,::1:7002');
    // A cache Redis of its own stays one Redis.
    const ownCache = parseConfig({
      REDIS_CLUSTER_NODES: '127.0.0.1:7000',
      CACHE_REDIS_URL: 'redis://127.0.0.1:6380',
    });
    expect(redisClusterOptions(ownCache, 'cache')).toBeUndefined();
    expect(redisClusterOptions(single, 'worker')).toBeUndefined();
  });
});
