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
});
