import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { keysMatching } from '../helpers/scratch-redis.js';

// A one-second claim: the job it derives outlives it by far (JOB_RETENTION_SECONDS).
let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext({ workers: ['products'], env: { IDEMPOTENCY_TTL_SECONDS: '1' } });
});
afterAll(() => ctx.close());

const product = (sku: string) => ({ sku, name: 'Mug', price: { amount: 1000, currency: 'EUR' } });

async function claimsLeft(): Promise<number> {
  return (await keysMatching(ctx.api.redis, `${ctx.config.QUEUE_PREFIX}:idempotency:*`)).length;
}

async function claimExpired(): Promise<void> {
  for (let i = 0; i < 100 && (await claimsLeft()) > 0; i++) await new Promise((r) => setTimeout(r, 50));
  expect(await claimsLeft()).toBe(0);
}

it('never hands back the old job for a new body once the claim has expired', async () => {
  const headers = { 'idempotency-key': 'order-1001', prefer: 'wait=10' };
  const first = await ctx.request({
    method: 'POST',
    url: '/api/pms/products',
    headers,
    payload: product('E-1'),
  });
  expect(first.statusCode).toBe(201);
  const firstJob = first.headers.location;

  // While the claim lives, another body under the key is refused and named after the first job.
  const refused = await ctx.request({
    method: 'POST',
    url: '/api/pms/products',
    headers,
    payload: product('E-2'),
  });
  expect(refused.statusCode).toBe(422);
  expect(json(refused)).toMatchObject({ code: 'idempotency_key_reused', jobId: firstJob?.split('/').pop() });

  await claimExpired();

  // The claim is gone but the first job is still in Redis: a new body gets a job of its own.
  const second = await ctx.request({
    method: 'POST',
    url: '/api/pms/products',
    headers,
    payload: product('E-2'),
  });
  expect(second.statusCode).toBe(201);
  expect(json(second)).toMatchObject({ sku: 'E-2', version: 1 });
  expect(second.headers.location).not.toBe(firstJob);

  // The first body again, once the second's claim is gone too, finds its own job: nothing is created twice.
  await claimExpired();
  const again = await ctx.request({
    method: 'POST',
    url: '/api/pms/products',
    headers,
    payload: product('E-1'),
  });
  expect(again.statusCode).toBe(201);
  expect(again.headers.location).toBe(firstJob);
  expect(await ctx.api.db('products').orderBy('sku').pluck('sku')).toEqual(['E-1', 'E-2']);
  expect(await ctx.api.db('events').where({ type: 'product.created' }).count('* as n').first()).toEqual({
    n: 2,
  });
});
