import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestContext, exitOf, json, type TestContext, waitForOutput } from '../helpers/context.js';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(() => ctx.close());

it('a second SIGTERM or SIGINT while draining exits at once', async () => {
  await ctx.api
    .db('products')
    .insert({ sku: 'SIG-1', name: 'Chair', price_amount: 5000, price_currency: 'EUR' });
  // Hold the product's row lock: the job stays active, so the graceful stop would wait for it.
  const trx = await ctx.api.db.transaction();
  try {
    await trx('products').where({ sku: 'SIG-1' }).forUpdate();
    for (const second of ['SIGTERM', 'SIGINT'] as const) {
      const worker = ctx.spawnWorker(['--queues', 'products'], { SHUTDOWN_TIMEOUT_MS: '60000' });
      await waitForOutput(worker, /worker started/);
      const res = await ctx.request({
        method: 'PUT',
        url: '/api/pms/products/SIG-1',
        headers: { 'if-match': '1' },
        payload: { name: 'Armchair', price: { amount: 7000, currency: 'EUR' } },
      });
      const job = await ctx.api.queues.products.getJob(json(res).id);
      for (let i = 0; i < 400 && (await job?.getState()) !== 'active'; i++)
        await new Promise((r) => setTimeout(r, 25));
      expect(await job?.getState()).toBe('active');

      worker.kill('SIGTERM');
      await waitForOutput(worker, /stopping workers/);
      await new Promise((r) => setTimeout(r, 200));
      expect(worker.exitCode).toBeNull(); // draining: the active job holds it up
      const started = Date.now();
      worker.kill(second);
      expect(await exitOf(worker)).toBe(1);
      expect(Date.now() - started).toBeLessThan(3000);
    }
  } finally {
    await trx.rollback();
  }
});
