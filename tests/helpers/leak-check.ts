import { afterAll } from 'vitest';
import { openContexts } from './context.js';

// Runs after the test file's own afterAll hooks: a context left open means leaked workers and
// connections, which would slow or break the other test files; fail the file instead.
afterAll(async () => {
  if (openContexts.size === 0) return;
  const count = openContexts.size;
  await Promise.allSettled([...openContexts].map((ctx) => ctx.close()));
  throw new Error(`${count} test context(s) were not closed by this file (workers or connections leaked)`);
});
