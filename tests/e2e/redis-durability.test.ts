import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freePort } from '../../scripts/bench/scratch.js';
import { createTestContext, exitOf, type TestContext, waitForOutput } from '../helpers/context.js';

/**
 * The start-up durability check (docs/reliability.md): a queue Redis that evicts keys and keeps no
 * AOF is refused with REDIS_DURABILITY_CHECK=refuse (the production default), and otherwise runs
 * with `stockflow_redis_durable 0` (the StockflowRedisNotDurable alert) and its settings exported,
 * read again at every scrape. It runs its own redis-server: it changes its configuration.
 */
let redis: ChildProcess;
let port: number;
let ctx: TestContext;
let dir: string;

beforeAll(async () => {
  port = await freePort();
  dir = await mkdtemp(path.join(os.tmpdir(), 'stockflow-durability-'));
  redis = spawn(
    'redis-server',
    [
      ...['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      ...['--maxmemory-policy', 'allkeys-lru', '--dir', dir],
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  await waitForOutput(redis, /Ready to accept connections/);
  ctx = await createTestContext({ env: { REDIS_URL: `redis://127.0.0.1:${port}` } });
});

afterAll(async () => {
  try {
    await ctx?.close();
  } finally {
    redis.kill('SIGTERM');
    await exitOf(redis);
    await rm(dir, { recursive: true, force: true });
  }
});

async function output(child: ChildProcess): Promise<{ code: number | null; text: string }> {
  let text = '';
  child.stdout?.on('data', (c: Buffer) => {
    text += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    text += c.toString();
  });
  const code = await exitOf(child);
  return { code, text };
}

it('refuses to start on a Redis that can lose accepted jobs when told to', async () => {
  const worker = ctx.spawnWorker(['--queues', 'products'], { REDIS_DURABILITY_CHECK: 'refuse' });
  const { code, text } = await output(worker);
  expect(code).toBe(1);
  expect(text).toContain(
    'Redis can lose accepted jobs: maxmemory-policy is allkeys-lru, not noeviction; appendonly is no',
  );
  expect(text).not.toMatch(/\n\s+at /); // a message, not a stack trace
});

it('otherwise starts, and exports the settings in force and whether they are durable', async () => {
  const worker = ctx.spawnWorker(['--queues', 'products'], { METRICS_PORT: '0' });
  try {
    await scrapes(worker);
  } finally {
    worker.kill('SIGTERM');
    await exitOf(worker);
  }
});

async function scrapes(worker: ChildProcess) {
  const line = await waitForOutput(worker, /worker metrics listening/);
  const url = JSON.parse(line).url as string;
  const scrape = async () => (await fetch(url)).text();
  let text = await scrape();
  expect(text).toContain('stockflow_redis_durable 0');
  expect(text).toMatch(
    /stockflow_redis_settings_info\{maxmemory_policy="allkeys-lru",appendonly="no",appendfsync="everysec"\} 1/,
  );

  // Fixed while the platform runs: the next scrape says so.
  const admin = new Redis(port, '127.0.0.1');
  await admin.config('SET', 'maxmemory-policy', 'noeviction');
  await admin.config('SET', 'appendonly', 'yes');
  admin.disconnect();
  text = await scrape();
  expect(text).toContain('stockflow_redis_durable 1');
  // The web process exports the same.
  const web = await ctx.request({ method: 'GET', url: '/metrics', key: ctx.adminKey });
  expect(web.body).toContain('stockflow_redis_durable 1');
}
