import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestContext, exitOf, json, type TestContext, waitForOutput } from '../helpers/context.js';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(() => ctx.close());

it('SIGTERM lets the active job finish, takes no new job, and exits 0', async () => {
  await ctx.api
    .db('products')
    .insert({ sku: 'S-1', name: 'Chair', price_amount: 5000, price_currency: 'EUR' });
  const worker = ctx.spawnWorker(['--queues', 'products']);
  await waitForOutput(worker, /worker started/);

  // Hold the product's row lock so the job stays active until we let go.
  const trx = await ctx.api.db.transaction();
  await trx('products').where({ sku: 'S-1' }).forUpdate();
  const res = await ctx.request({
    method: 'PUT',
    url: '/api/pms/products/S-1',
    headers: { 'if-match': '1' },
    payload: { name: 'Armchair', price: { amount: 7000, currency: 'EUR' } },
  });
  const jobId = json(res).id;
  for (let i = 0; i < 400; i++) {
    const job = await ctx.api.queues.products.getJob(jobId);
    if ((await job?.getState()) === 'active') break;
    await new Promise((r) => setTimeout(r, 25));
  }
  expect(await (await ctx.api.queues.products.getJob(jobId))?.getState()).toBe('active');

  worker.kill('SIGTERM');
  await waitForOutput(worker, /stopping workers/);
  const late = await ctx.request({
    method: 'POST',
    url: '/api/pms/products',
    payload: { sku: 'S-2', name: 'Stool', price: { amount: 900, currency: 'EUR' } },
  });
  await new Promise((r) => setTimeout(r, 500));
  expect(worker.exitCode).toBeNull(); // still waiting for its active job
  await trx.commit();

  expect(await exitOf(worker)).toBe(0);
  const status = await ctx.waitForJob(jobId);
  expect(status.state).toBe('completed');
  expect((await ctx.api.db('products').where({ sku: 'S-1' }).first()).name).toBe('Armchair');
  // The job that arrived during shutdown was left for the next worker.
  expect(await (await ctx.api.queues.products.getJob(json(late).id))?.getState()).toBe('waiting');
});
