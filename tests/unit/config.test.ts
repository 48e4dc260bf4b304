import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.js';
import { ConfigError } from '../../src/errors/config-error.js';

describe('config', () => {
  it('has local defaults for every setting', () => {
    const config = parseConfig({});
    expect(config).toMatchObject({
      DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/stockflow',
      REDIS_URL: 'redis://127.0.0.1:6379',
      PORT: 3000,
      QUEUE_PREFIX: 'stockflow',
      JOB_ATTEMPTS: 5,
      JOB_RETENTION_SECONDS: 7 * 86_400,
      concurrency: { products: 10, maintenance: 1 },
    });
  });

  it('coerces numbers and flags from strings', () => {
    const config = parseConfig({ PORT: '8080', WORKER_CONCURRENCY_PRODUCTS: '3', LOG_PRETTY: 'true' });
    expect(config.PORT).toBe(8080);
    expect(config.concurrency.products).toBe(3);
    expect(config.LOG_PRETTY).toBe(true);
  });

  it('names every bad variable', () => {
    let error: unknown;
    try {
      parseConfig({ PORT: 'eighty', REDIS_URL: 'http://x', LOG_LEVEL: 'loud', QUEUE_PREFIX: 'a:b' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    for (const name of ['PORT', 'REDIS_URL', 'LOG_LEVEL', 'QUEUE_PREFIX']) expect(problems).toContain(name);
  });

  it("defaults fit a default Postgres and take a dead worker's jobs over within 20 s", () => {
    const config = parseConfig({});
    // Six processes (two web, four workers) at 10 connections: 60 of max_connections 100.
    expect(config.DATABASE_POOL_MAX).toBe(10);
    expect(config.DATABASE_RESERVED_CONNECTIONS).toBe(5);
    expect(config.WORKER_LOCK_DURATION_MS + config.workerStalledIntervalMs).toBeLessThanOrEqual(20_000);
    // A short lock (as the crash tests set) is checked for at least as often.
    expect(parseConfig({ WORKER_LOCK_DURATION_MS: '1500' }).workerStalledIntervalMs).toBe(1500);
  });

  it('reads Redis Sentinel settings and needs the master name with them', () => {
    const config = parseConfig({
      REDIS_SENTINELS: '127.0.0.1:26379, sentinel-b:26380,[::1]:26381',
      REDIS_SENTINEL_NAME: 'stockflow',
    });
    expect(config.REDIS_SENTINELS).toEqual([
      { host: '127.0.0.1', port: 26379 },
      { host: 'sentinel-b', port: 26380 },
      { host: '::1', port: 26381 },
    ]);
    expect(() => parseConfig({ REDIS_SENTINELS: '127.0.0.1:26379' })).toThrow(/REDIS_SENTINEL_NAME/);
    expect(() => parseConfig({ REDIS_SENTINELS: '127.0.0.1', REDIS_SENTINEL_NAME: 'm' })).toThrow(
      /REDIS_SENTINELS/,
    );
  });

  it('refuses a Redis that can lose jobs in production, and alerts elsewhere', () => {
    expect(parseConfig({}).redisDurabilityCheck).toBe('alert');
    const secretsKey = Buffer.alloc(32, 1).toString('base64');
    expect(parseConfig({ NODE_ENV: 'production', SECRETS_KEY: secretsKey }).redisDurabilityCheck).toBe(
      'refuse',
    );
    expect(
      parseConfig({ NODE_ENV: 'production', SECRETS_KEY: secretsKey, REDIS_DURABILITY_CHECK: 'alert' })
        .redisDurabilityCheck,
    ).toBe('alert');
  });
});
