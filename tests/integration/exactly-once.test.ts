import type { Job } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProduct } from '../../src/domain/products.js';
import type { JobStatus } from '../../src/queues/job-status.js';
import { applyOnce } from '../../src/workers/group-commit.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext({ workers: ['products'] });
});
afterAll(() => ctx.close());

const counts = async (sku: string) => ({
  products: (await ctx.api.db('products').where({ sku })).length,
  events: (await ctx.api.db('events').where({ aggregate_id: sku })).length,
  audit: (await ctx.api.db('audit_log').where({ table_name: 'products', row_key: sku })).length,
});

/** Runs a completed job once more, as after a crash between commit and acknowledgement. */
async function runAgain(first: JobStatus): Promise<JobStatus> {
  const job = (await ctx.api.queues.products.getJob(first.id)) as Job;
  await job.retry('completed');
  let again = await ctx.waitForJob(first.id);
  for (let i = 0; again.finishedAt === first.finishedAt && i < 200; i++) {
    await new Promise((r) => setTimeout(r, 25));
    again = await ctx.waitForJob(first.id);
  }
  expect(again.finishedAt).not.toBe(first.finishedAt); // it really ran a second time
  return again;
}

describe('a job that runs twice changes the database once', () => {
  it('re-running a completed create returns the stored result instead of failing sku_taken', async () => {
    const res = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      payload: { sku: 'X-1', name: 'Lamp', price: { amount: 4500, currency: 'EUR' } },
    });
    const first = await ctx.waitForJob(json(res).id);
    expect(first.state).toBe('completed');

    const again = await runAgain(first);
    expect(again.state).toBe('completed');
    expect(again.result).toEqual(first.result);
    expect(await counts('X-1')).toEqual({ products: 1, events: 1, audit: 1 });
  });

  it('re-running an update bumps the version once', async () => {
    await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: { prefer: 'wait=5' },
      payload: { sku: 'X-2', name: 'Lamp', price: { amount: 4500, currency: 'EUR' } },
    });
    const res = await ctx.request({
      method: 'PUT',
      url: '/api/pms/products/X-2',
      headers: { 'if-match': '1' },
      payload: { name: 'Lamp 2', price: { amount: 4600, currency: 'EUR' } },
    });
    const first = await ctx.waitForJob(json(res).id);
    const again = await runAgain(first);
    expect(again.state).toBe('completed');
    expect((await ctx.api.db('products').where({ sku: 'X-2' }).first()).version).toBe(2);
    expect(await counts('X-2')).toEqual({ products: 1, events: 2, audit: 2 });
  });

  it('two concurrent runs of one job id apply it once; the second waits and returns the first result', async () => {
    const job = { id: 'products-concurrent-1', queueName: 'products', name: 'product.create' };
    const meta = { actor: 'test' };
    let applied = 0;
    const input = {
      sku: 'X-3',
      name: 'Vase',
      price: { amount: 900, currency: 'EUR' },
      status: 'draft' as const,
    };
    const run = () =>
      applyOnce(ctx.api.db, job, meta, async (trx) => {
        applied++;
        const product = await createProduct(trx, input);
        await new Promise((r) => setTimeout(r, 200)); // keep the claim held while the other run arrives
        return product;
      });
    const [a, b] = await Promise.all([run(), run()]);
    expect(applied).toBe(1);
    expect(b).toEqual(a);
    expect(await counts('X-3')).toEqual({ products: 1, events: 1, audit: 1 });
  });

  it('a failed job leaves the database as it was', async () => {
    const job = { id: 'products-rolled-back', queueName: 'products', name: 'product.create' };
    const input = {
      sku: 'X-4',
      name: 'Vase',
      price: { amount: 900, currency: 'EUR' },
      status: 'draft' as const,
    };
    await expect(
      applyOnce(ctx.api.db, job, { actor: 'test' }, async (trx) => {
        await createProduct(trx, input);
        throw new Error('connection lost');
      }),
    ).rejects.toThrow('connection lost');
    expect(await counts('X-4')).toEqual({ products: 0, events: 0, audit: 0 });
    expect(await ctx.api.db('applied_jobs').where({ job_id: job.id })).toEqual([]);
  });
});

describe('database triggers', () => {
  it('bumps version and updated_at on every update and keeps created_at', async () => {
    const db = ctx.api.db;
    await db('products').insert({
      sku: 'T-1',
      name: 'Cup',
      price_amount: 100,
      price_currency: 'EUR',
      version: 42,
    });
    const inserted = await db('products').where({ sku: 'T-1' }).first();
    expect(inserted.version).toBe(1);
    await db('products')
      .where({ sku: 'T-1' })
      .update({ name: 'Cup 2', version: 1, created_at: new Date(0) });
    await db('products').where({ sku: 'T-1' }).update({ name: 'Cup 3' });
    const updated = await db('products').where({ sku: 'T-1' }).first();
    expect(updated.version).toBe(3);
    expect(updated.created_at).toEqual(inserted.created_at);
    expect(updated.updated_at.getTime()).toBeGreaterThanOrEqual(inserted.updated_at.getTime());
  });

  it('writes the audit trail with before and after images, the actor and the job', async () => {
    await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: { prefer: 'wait=5' },
      payload: { sku: 'T-2', name: 'Bowl', price: { amount: 1500, currency: 'EUR' } },
    });
    const res = await ctx.request({
      method: 'PUT',
      url: '/api/pms/products/T-2',
      headers: { prefer: 'wait=5', 'if-match': '1' },
      payload: { name: 'Big bowl', price: { amount: 1700, currency: 'EUR' } },
    });
    expect(res.statusCode).toBe(200);
    const trail = await ctx.api
      .db('audit_log')
      .where({ table_name: 'products', row_key: 'T-2' })
      .orderBy('id');
    expect(trail.map((r) => r.op)).toEqual(['INSERT', 'UPDATE']);
    const update = trail[1];
    expect(update.before).toMatchObject({ name: 'Bowl', price_amount: 1500, version: 1 });
    expect(update.after).toMatchObject({ name: 'Big bowl', price_amount: 1700, version: 2 });
    expect(update.actor).toBe('test-pms');
    expect(update.job_id).toMatch(/^products-/);
  });

  it('keeps the audit trail append-only', async () => {
    await expect(ctx.api.db('audit_log').update({ actor: 'someone-else' })).rejects.toThrow(/append-only/);
    await expect(ctx.api.db('audit_log').delete()).rejects.toThrow(/append-only/);
  });
});
