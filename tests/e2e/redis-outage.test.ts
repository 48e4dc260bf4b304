import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freePort } from '../../scripts/bench/scratch.js';
import { createTestContext, exitOf, json, type TestContext } from '../helpers/context.js';
import { startScratchRedis } from '../helpers/scratch-redis.js';

// This file stops Redis, so it runs its own redis-server on a spare port.
let redis: ChildProcess;
let port: number;
let ctx: TestContext;

beforeAll(async () => {
  port = await freePort();
  redis = await startScratchRedis(port);
  ctx = await createTestContext({ env: { REDIS_URL: `redis://127.0.0.1:${port}` } });
});
afterAll(async () => {
  if (redis.exitCode !== null) {
    redis = await startScratchRedis(port);
  }
  await ctx.close();
  redis.kill('SIGTERM');
  await exitOf(redis);
});

it('answers fast and clearly while Redis is down, and recovers when it is back', async () => {
  const product = { sku: 'O-1', name: 'Desk', price: { amount: 25000, currency: 'EUR' } };
  expect((await ctx.request({ method: 'GET', url: '/readyz', key: null })).statusCode).toBe(200);

  redis.kill('SIGKILL');
  await exitOf(redis);

  const ready = await ctx.request({ method: 'GET', url: '/readyz', key: null });
  expect(ready.statusCode).toBe(503);
  expect(json(ready)).toMatchObject({ code: 'service_unavailable', unavailable: ['Redis'] });

  const started = Date.now();
  const refused = await ctx.request({ method: 'POST', url: '/api/pms/products', payload: product });
  expect(Date.now() - started).toBeLessThan(2000); // fails fast, never hangs
  expect(refused.statusCode).toBe(503);
  expect(refused.headers['retry-after']).toBe('5');
  expect(json(refused).code).toBe('service_unavailable');
  expect(refused.body).not.toMatch(/ECONNREFUSED|writeable|ioredis/i);

  // Reads do not need Redis.
  expect((await ctx.request({ method: 'GET', url: '/api/pms/products' })).statusCode).toBe(200);

  redis = await startScratchRedis(port);
  let status = 0;
  for (let i = 0; i < 100 && status !== 202; i++) {
    status = (await ctx.request({ method: 'POST', url: '/api/pms/products', payload: product })).statusCode;
    if (status !== 202) await new Promise((r) => setTimeout(r, 100));
  }
  expect(status).toBe(202);
});

it('answers 503 for a job state and the 202 handle for a waited job while Redis is down, never 500', async () => {
  const product = { sku: 'O-2', name: 'Chair', price: { amount: 9000, currency: 'EUR' } };
  // No worker runs here: the job stays queued, so the waiting request is still waiting when Redis dies.
  const waiting = ctx.request({
    method: 'POST',
    url: '/api/pms/products',
    headers: { prefer: 'wait=10', 'idempotency-key': 'outage-wait-1' },
    payload: product,
  });
  await new Promise((r) => setTimeout(r, 500));
  redis.kill('SIGKILL');
  await exitOf(redis);

  const waited = await waiting;
  // Accepted before Redis went away: the handle to poll, not an error (the preference not applied).
  expect(waited.statusCode, waited.body).toBe(202);
  const id = json(waited).id as string;
  expect(waited.headers.location).toBe(`/api/jobs/${id}`);
  expect(waited.headers['preference-applied']).toBeUndefined();

  const status = await ctx.request({ method: 'GET', url: `/api/jobs/${id}` });
  expect(status.statusCode, status.body).toBe(503);
  expect(status.headers['retry-after']).toBe('5');
  expect(json(status).code).toBe('service_unavailable');
  expect(status.body).not.toMatch(/writeable|enableOfflineQueue|ioredis/i);

  redis = await startScratchRedis(port);
  // This Redis keeps nothing: the job is gone, and the same request with its key queues it again.
  let again = 0;
  for (let i = 0; i < 100 && again !== 202; i++) {
    again = (
      await ctx.request({
        method: 'POST',
        url: '/api/pms/products',
        headers: { 'idempotency-key': 'outage-wait-1' },
        payload: product,
      })
    ).statusCode;
    if (again !== 202) await new Promise((r) => setTimeout(r, 100));
  }
  expect(again).toBe(202);
});
