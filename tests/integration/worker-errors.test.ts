import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, json, type TestContext } from '../helpers/context.js';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext({ workers: ['products', 'maintenance'] });
});
afterAll(() => ctx.close());

const lamp = (sku: string, name = 'Lamp') => ({ sku, name, price: { amount: 4500, currency: 'EUR' } });

describe('error classification', () => {
  it('retries a non-domain failure with backoff until it succeeds', async () => {
    // A constraint the domain does not know: its violation is an ordinary (retryable) error.
    await ctx.api.db.raw(`alter table products add constraint no_flaky check (name <> 'flaky') not valid`);
    const res = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      payload: lamp('E-1', 'flaky'),
    });
    const id = json(res).id;
    for (let i = 0; i < 400; i++) {
      const job = await ctx.api.queues.products.getJob(id);
      if ((job?.attemptsMade ?? 0) >= 2) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    await ctx.api.db.raw('alter table products drop constraint no_flaky');
    const status = await ctx.waitForJob(id);
    expect(status.state).toBe('completed');
    expect(status.attemptsMade).toBeGreaterThanOrEqual(3);
    expect(await ctx.api.db('products').where({ sku: 'E-1' })).toHaveLength(1);
  });

  it('fails after the last attempt with a generic error that shows no internals', async () => {
    await ctx.api.db.raw(`alter table products add constraint no_doomed check (name <> 'doomed') not valid`);
    try {
      const res = await ctx.request({
        method: 'POST',
        url: '/api/pms/products',
        payload: lamp('E-2', 'doomed'),
      });
      const status = await ctx.waitForJob(json(res).id);
      expect(status.state).toBe('failed');
      expect(status.attemptsMade).toBe(ctx.config.JOB_ATTEMPTS);
      expect(status.error).toMatchObject({ code: 'job_failed' });
      expect(JSON.stringify(status.error)).not.toContain('no_doomed');
    } finally {
      await ctx.api.db.raw('alter table products drop constraint no_doomed');
    }
  });

  it('fails a job whose payload no longer matches its schema at once, with invalid_payload', async () => {
    const job = await ctx.api.queues.products.add(
      'product.create',
      { payload: { sku: 'E-3', name: 'Lamp' }, meta: { actor: 'old-release' } },
      { jobId: 'products-old-payload', attempts: 5 },
    );
    const status = await ctx.waitForJob(job.id!);
    expect(status).toMatchObject({ state: 'failed', attemptsMade: 1, error: { code: 'invalid_payload' } });
    expect(status.error?.details.issues).toEqual(
      expect.arrayContaining([expect.objectContaining({ path: 'price' })]),
    );
  });
});

describe('maintenance', () => {
  it('registers each job scheduler once, however often workers start', async () => {
    const keys = async () => (await ctx.api.queues.maintenance.getJobSchedulers()).map((s) => s.key).sort();
    const registered = await keys();
    expect(registered).toContain('prune-applied-jobs');
    expect(new Set(registered).size).toBe(registered.length);
    const again = await ctx.startWorkers(['maintenance']);
    expect(await keys()).toEqual(registered);
    await Promise.all(again.map((w) => w.close()));
  });

  it('prunes applied_jobs records older than twice the job retention', async () => {
    await ctx.api.db('applied_jobs').insert([
      {
        job_id: 'products-ancient',
        queue: 'products',
        name: 'product.create',
        applied_at: new Date(Date.now() - 30 * 86_400_000),
      },
      { job_id: 'products-recent', queue: 'products', name: 'product.create' },
    ]);
    const job = await ctx.api.queues.maintenance.add(
      'maintenance.prune-applied-jobs',
      { payload: { olderThanSeconds: 2 * ctx.config.JOB_RETENTION_SECONDS }, meta: { actor: 'system' } },
      { jobId: 'maintenance-prune-now' },
    );
    const status = await ctx.waitForJob(job.id!);
    expect(status).toMatchObject({ state: 'completed', result: { deleted: 1 } });
    const left = (await ctx.api.db('applied_jobs').select('job_id')).map((r) => r.job_id);
    expect(left).toContain('products-recent');
    expect(left).not.toContain('products-ancient');
  });

  it('prunes job_runs older than JOB_RUNS_RETENTION_DAYS, so the jobs report stays bounded', async () => {
    const days = ctx.config.JOB_RUNS_RETENTION_DAYS;
    await ctx.api.db.raw(
      `insert into job_runs (queue, name, attempt, outcome, run_ms, finished_at)
       values ('prune-test', 'old', 1, 'completed', 1, now() - make_interval(days => ?)),
              ('prune-test', 'recent', 1, 'completed', 1, now() - make_interval(days => ?))`,
      [days + 1, days - 1],
    );
    const job = await ctx.api.queues.maintenance.add(
      'maintenance.prune-job-runs',
      { payload: { olderThanDays: days }, meta: { actor: 'system' } },
      { jobId: 'maintenance-prune-job-runs-now' },
    );
    const status = await ctx.waitForJob(job.id!);
    expect(status).toMatchObject({ state: 'completed', result: { deleted: 1 } });
    const left = await ctx.api.db('job_runs').where({ queue: 'prune-test' }).pluck('name');
    expect(left).toEqual(['recent']);
    expect((await ctx.api.queues.maintenance.getJobSchedulers()).map((s) => s.key)).toContain(
      'prune-job-runs',
    );
  });
});
