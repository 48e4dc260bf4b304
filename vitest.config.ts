import { defineConfig } from 'vitest/config';

/** The inventory tests run a second time with group commit off (INVENTORY_GROUP_COMMIT=false). */
const inventoryTests = [
  'tests/integration/inventory.test.ts',
  'tests/integration/inventory-concurrency.test.ts',
  'tests/integration/inventory-crash.test.ts',
];

/**
 * The tests that touch Redis most run a second time on a 3-master Redis Cluster of their own
 * (started by tests/helpers/global-setup.ts when a project sets TEST_REDIS_CLUSTER): a subset
 * that covers every kind of Redis use (queues and job status, idempotency and inbound claims,
 * rate limits, the read cache, its stamps and bus, the alert inputs, pub/sub signals, Bull Board).
 */
const redisClusterTests = [
  'tests/integration/intake.test.ts',
  'tests/integration/idempotency-expiry.test.ts',
  'tests/integration/abuse-limits.test.ts',
  'tests/integration/read-cache.test.ts',
  'tests/integration/events-stream.test.ts',
  'tests/integration/stream-revocation.test.ts',
  'tests/integration/bull-board.test.ts',
  'tests/integration/alerts.test.ts',
  'tests/integration/redis-cluster.test.ts',
];

export default defineConfig({
  test: {
    globalSetup: ['tests/helpers/global-setup.ts'],
    setupFiles: ['tests/helpers/leak-check.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    coverage: {
      provider: 'v8',
      include: ['src/**/*.ts'],
      reporter: ['text-summary', 'text'],
    },
    projects: [
      { extends: true, test: { name: 'default', include: ['tests/**/*.test.ts'] } },
      {
        extends: true,
        test: { name: 'group-commit-off', include: inventoryTests, env: { INVENTORY_GROUP_COMMIT: 'false' } },
      },
      {
        extends: true,
        test: { name: 'redis-cluster', include: redisClusterTests, env: { TEST_REDIS_CLUSTER: 'true' } },
      },
    ],
  },
});
