import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { givenMainImage } from '../helpers/images.js';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext({ workers: ['products'] });
});
afterAll(() => ctx.close());

const wait = { prefer: 'wait=10' };
const shirt = (sku: string, extra: Record<string, unknown> = {}) => ({
  sku,
  name: 'T-shirt',
  price: { amount: 1999, currency: 'EUR' },
  ...extra,
});

describe('products through the queue', () => {
  it('creates a product: 202 with a job handle, the job completes, the product is readable', async () => {
    const res = await ctx.request({ method: 'POST', url: '/api/pms/products', payload: shirt('P-1') });
    expect(res.statusCode).toBe(202);
    const handle = json(res);
    expect(res.headers.location).toBe(`/api/jobs/${handle.id}`);
    expect(handle).toMatchObject({ queue: 'products', name: 'product.create', state: 'waiting' });

    const status = await ctx.waitForJob(handle.id);
    expect(status.state).toBe('completed');
    expect(status.result).toMatchObject({ sku: 'P-1', version: 1, status: 'draft' });

    const polled = json(await ctx.request({ method: 'GET', url: `/api/jobs/${handle.id}` }));
    expect(polled).toMatchObject({ id: handle.id, state: 'completed', attemptsMade: 1, error: null });
    expect(polled.finishedAt).toEqual(expect.any(String));

    const read = await ctx.request({ method: 'GET', url: '/api/pms/products/P-1' });
    expect(read.statusCode).toBe(200);
    expect(read.headers.etag).toBe('"1"');
    expect(json(read)).toMatchObject({
      sku: 'P-1',
      name: 'T-shirt',
      price: { amount: 1999, currency: 'EUR' },
    });

    const events = await ctx.api.db('events').where({ aggregate_id: 'P-1' });
    expect(events.map((e) => e.type)).toEqual(['product.created']);
    expect(events[0]).toMatchObject({ job_id: handle.id, actor: 'test-pms' });
  });

  it('fails a duplicate sku with sku_taken, and a Prefer: wait caller gets 409', async () => {
    await ctx.request({ method: 'POST', url: '/api/pms/products', headers: wait, payload: shirt('P-dup') });
    const res = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: wait,
      payload: shirt('P-dup'),
    });
    expect(res.statusCode).toBe(409);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(json(res)).toMatchObject({ code: 'sku_taken', status: 409, details: { sku: 'P-dup' } });
    const job = await ctx.waitForJob(json(res).jobId);
    expect(job).toMatchObject({ state: 'failed', attemptsMade: 1, error: { code: 'sku_taken' } });
  });

  it('updates with If-Match, bumps the version, and refuses a stale version with version_conflict', async () => {
    await ctx.request({ method: 'POST', url: '/api/pms/products', headers: wait, payload: shirt('P-up') });
    const body = {
      name: 'Better T-shirt',
      price: { amount: 2499, currency: 'EUR' },
      attributes: { color: 'red' },
    };
    const ok = await ctx.request({
      method: 'PUT',
      url: '/api/pms/products/P-up',
      headers: { ...wait, 'if-match': '"1"' },
      payload: body,
    });
    expect(ok.statusCode).toBe(200);
    expect(json(ok)).toMatchObject({ version: 2, name: 'Better T-shirt', attributes: { color: 'red' } });

    const stale = await ctx.request({
      method: 'PUT',
      url: '/api/pms/products/P-up',
      headers: wait,
      payload: { ...body, expectedVersion: 1 },
    });
    expect(stale.statusCode).toBe(409);
    expect(json(stale)).toMatchObject({
      code: 'version_conflict',
      details: { expectedVersion: 1, currentVersion: 2, current: { sku: 'P-up', version: 2 } },
    });
    const row = await ctx.api.db('products').where({ sku: 'P-up' }).first();
    expect(row.version).toBe(2);
  });

  it('asks for a version precondition on a full update (428) and enqueues nothing', async () => {
    const before = await ctx.api.queues.products.getJobCounts();
    const res = await ctx.request({
      method: 'PUT',
      url: '/api/pms/products/P-1',
      payload: { name: 'x', price: { amount: 1, currency: 'EUR' } },
    });
    expect(res.statusCode).toBe(428);
    expect(json(res).code).toBe('precondition_required');
    expect(await ctx.api.queues.products.getJobCounts()).toEqual(before);
  });

  it('fails an update of an unknown product with not_found (404)', async () => {
    const res = await ctx.request({
      method: 'PUT',
      url: '/api/pms/products/NOPE',
      headers: { ...wait, 'if-match': '1' },
      payload: { name: 'x', price: { amount: 1, currency: 'EUR' } },
    });
    expect(res.statusCode).toBe(404);
    expect(json(res).code).toBe('not_found');
  });

  it('publishes only a product that passes every rule, listing every failed rule', async () => {
    await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: wait,
      payload: shirt('P-free', { price: { amount: 0, currency: 'EUR' } }),
    });
    await givenMainImage(ctx.api.db, 'P-free');
    const refused = await ctx.request({
      method: 'POST',
      url: '/api/pms/products/P-free/publish',
      headers: wait,
    });
    expect(refused.statusCode).toBe(422);
    expect(json(refused)).toMatchObject({
      code: 'publish_rules_failed',
      details: { failures: [{ rule: 'price_positive' }] },
    });
    expect((await ctx.api.db('products').where({ sku: 'P-free' }).first()).status).toBe('draft');

    await ctx.request({ method: 'POST', url: '/api/pms/products', headers: wait, payload: shirt('P-pub') });
    await givenMainImage(ctx.api.db, 'P-pub');
    const published = await ctx.request({
      method: 'POST',
      url: '/api/pms/products/P-pub/publish',
      headers: wait,
    });
    expect(published.statusCode).toBe(200);
    expect(json(published)).toMatchObject({ status: 'published', version: 2 });
    expect(json(published).publishedAt).toEqual(expect.any(String));
  });

  it('refuses to create a published product that breaks the rules, leaving nothing behind', async () => {
    const res = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: wait,
      payload: shirt('P-bad-pub', {
        status: 'published',
        name: '  x ',
        price: { amount: 0, currency: 'EUR' },
      }),
    });
    expect(res.statusCode).toBe(422);
    // A product created as published cannot have a main image yet (see the images feature).
    expect(json(res).details.failures.map((f: { rule: string }) => f.rule)).toEqual([
      'price_positive',
      'main_image_present',
    ]);
    expect(await ctx.api.db('products').where({ sku: 'P-bad-pub' }).first()).toBeUndefined();
    expect(await ctx.api.db('events').where({ aggregate_id: 'P-bad-pub' })).toEqual([]);
  });

  it('archives with DELETE (the row stays) and will not publish an archived product', async () => {
    await ctx.request({ method: 'POST', url: '/api/pms/products', headers: wait, payload: shirt('P-arch') });
    const archived = await ctx.request({ method: 'DELETE', url: '/api/pms/products/P-arch', headers: wait });
    expect(archived.statusCode).toBe(200);
    expect(json(archived)).toMatchObject({ status: 'archived' });
    expect((await ctx.api.db('products').where({ sku: 'P-arch' }).first()).status).toBe('archived');

    const publish = await ctx.request({
      method: 'POST',
      url: '/api/pms/products/P-arch/publish',
      headers: wait,
    });
    expect(publish.statusCode).toBe(409);
    expect(json(publish)).toMatchObject({
      code: 'invalid_transition',
      details: { currentStatus: 'archived' },
    });
  });

  it('lists products with filters and keyset pagination', async () => {
    for (const sku of ['L-a', 'L-b', 'L-c', 'L-d', 'L-e']) {
      await ctx.request({
        method: 'POST',
        url: '/api/pms/products',
        headers: wait,
        payload: shirt(sku, { name: `Lamp ${sku}` }),
      });
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const query: string = `q=lamp&limit=2${cursor ? `&cursor=${cursor}` : ''}`;
      const page = json(await ctx.request({ method: 'GET', url: `/api/pms/products?${query}` }));
      expect(page.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.items.map((p: { sku: string }) => p.sku));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toEqual(['L-a', 'L-b', 'L-c', 'L-d', 'L-e']);

    const drafts = json(await ctx.request({ method: 'GET', url: '/api/pms/products?status=archived' }));
    expect(drafts.items.map((p: { sku: string }) => p.sku)).toEqual(['P-arch']);

    const bad = await ctx.request({ method: 'GET', url: '/api/pms/products?limit=500' });
    expect(bad.statusCode).toBe(400);
    expect(json(bad).errors[0]).toMatchObject({ in: 'querystring', path: 'limit' });
  });

  it('answers 404 problems for unknown products and jobs', async () => {
    const product = await ctx.request({ method: 'GET', url: '/api/pms/products/NOPE' });
    expect(product.statusCode).toBe(404);
    expect(json(product)).toMatchObject({ code: 'not_found', status: 404 });
    const job = await ctx.request({ method: 'GET', url: '/api/jobs/products-doesnotexist' });
    expect(job.statusCode).toBe(404);
    const foreign = await ctx.request({ method: 'GET', url: '/api/jobs/nonsense' });
    expect(foreign.statusCode).toBe(404);
  });
});
