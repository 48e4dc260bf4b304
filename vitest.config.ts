import { defineConfig } from 'vitest/config';

/** The inventory tests run a second time with group commit off (INVENTORY_GROUP_COMMIT=false). */
const inventoryTests = [
  'tests/integration/inventory.test.ts',
  'tests/integration/inventory-concurrency.test.ts',
  'tests/integration/inventory-crash.test.ts',
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
    ],
  },
});
