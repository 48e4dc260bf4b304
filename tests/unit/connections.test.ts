import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.js';
import { durabilityProblems, redisOptions, redisTargetOf } from '../../src/connections.js';
import { isServiceUnavailable } from '../../src/db/knex.js';

describe('Redis connections by role', () => {
  const sentinel = parseConfig({
    REDIS_URL: 'redis://:s3cret@127.0.0.1:6379/2',
    REDIS_SENTINELS: '127.0.0.1:26379,127.0.0.1:26380',
    REDIS_SENTINEL_NAME: 'stockflow',
  });

  it('sends every role of the queue Redis through the sentinels, and follows a failover', () => {
    for (const role of ['worker', 'producer', 'subscriber', 'cache', 'cache-bus'] as const) {
      const { url, options } = redisOptions(sentinel, role);
      expect(url).toBeUndefined();
      expect(options).toMatchObject({
        sentinels: [
          { host: '127.0.0.1', port: 26379 },
          { host: '127.0.0.1', port: 26380 },
        ],
        name: 'stockflow',
        role: 'master',
        password: 's3cret',
        db: 2,
        failoverDetector: true,
      });
      // A demoted master's READONLY makes the connection move on to the new one.
      expect(
        options.reconnectOnError?.(new Error('READONLY You can not write against a read only replica.')),
      ).toBe(2);
    }
    expect(redisTargetOf(sentinel, 'producer')).toBe(
      'sentinels 127.0.0.1:26379,127.0.0.1:26380 (master stockflow)',
    );
  });

  it('never gives up reconnecting; producers and cache reads fail fast, workers wait', () => {
    const config = parseConfig({});
    for (const role of ['worker', 'producer', 'subscriber', 'cache', 'cache-bus'] as const) {
      const { options } = redisOptions(config, role);
      expect(options.retryStrategy?.(1000)).toBe(2000);
    }
    expect(redisOptions(config, 'worker').options).toMatchObject({ maxRetriesPerRequest: null });
    expect(redisOptions(config, 'worker').options.commandTimeout).toBeUndefined();
    expect(redisOptions(config, 'producer').options).toMatchObject({
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      commandTimeout: 5000,
    });
  });

  it('keeps a separate cache Redis outside the sentinels', () => {
    const withCache = parseConfig({
      REDIS_SENTINELS: '127.0.0.1:26379',
      REDIS_SENTINEL_NAME: 'stockflow',
      CACHE_REDIS_URL: 'redis://cache:6379',
    });
    expect(redisOptions(withCache, 'cache').url).toBe('redis://cache:6379');
    expect(redisOptions(withCache, 'producer').url).toBeUndefined();
  });
});

describe('start-up durability check', () => {
  it('names an eviction policy and a missing AOF; appendfsync everysec is fine', () => {
    expect(
      durabilityProblems({ maxmemoryPolicy: 'noeviction', appendonly: 'yes', appendfsync: 'everysec' }),
    ).toEqual([]);
    expect(durabilityProblems({ maxmemoryPolicy: 'allkeys-lru', appendonly: 'no' })).toEqual([
      'maxmemory-policy is allkeys-lru, not noeviction',
      'appendonly is no',
    ]);
    // What could not be read is not reported as a problem.
    expect(durabilityProblems({})).toEqual([]);
  });
});

describe('a backing service that is away', () => {
  it('answers 503 for Postgres restarting or unreachable, 500 for anything else', () => {
    const pgError = (code: string, message = 'x') => Object.assign(new Error(message), { code });
    expect(
      isServiceUnavailable(pgError('57P01', 'terminating connection due to administrator command')),
    ).toBe(true);
    expect(isServiceUnavailable(pgError('57P03', 'the database system is starting up'))).toBe(true);
    expect(isServiceUnavailable(pgError('08006'))).toBe(true);
    expect(isServiceUnavailable(pgError('53300', 'sorry, too many clients already'))).toBe(true);
    expect(isServiceUnavailable(pgError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432'))).toBe(true);
    expect(isServiceUnavailable(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isServiceUnavailable(pgError('23505', 'duplicate key value'))).toBe(false);
    expect(isServiceUnavailable(new TypeError('x is undefined'))).toBe(false);
  });
});
