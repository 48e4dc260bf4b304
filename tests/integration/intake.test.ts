import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, revokeApiKey } from '../../src/db/api-keys.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext({ workers: ['products'] });
});
afterAll(() => ctx.close());

const product = (sku: string, amount = 1000) => ({ sku, name: 'Mug', price: { amount, currency: 'EUR' } });
const jobCounts = () => ctx.api.queues.products.getJobCounts();

describe('Idempotency-Key', () => {
  it('returns the same job for the same key and body, and creates the product once', async () => {
    const headers = { 'idempotency-key': 'order-77' };
    const first = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers,
      payload: product('I-1'),
    });
    const second = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers,
      payload: product('I-1'),
    });
    expect(first.statusCode).toBe(202);
    expect(second.statusCode).toBe(202);
    expect(json(second).id).toBe(json(first).id);
    await ctx.waitForJob(json(first).id);

    // After completion the same request still answers with that job, now with its outcome.
    const replay = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: { ...headers, prefer: 'wait=5' },
      payload: product('I-1'),
    });
    expect(replay.statusCode).toBe(201);
    expect(json(replay)).toMatchObject({ sku: 'I-1', version: 1 });
    expect(await ctx.api.db('events').where({ aggregate_id: 'I-1' })).toHaveLength(1);
  });

  it('refuses the same key with another body (422) and enqueues nothing for it', async () => {
    const headers = { 'idempotency-key': 'order-78' };
    await ctx.request({ method: 'POST', url: '/api/pms/products', headers, payload: product('I-2') });
    const before = await jobCounts();
    const reused = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers,
      payload: product('I-2', 999),
    });
    expect(reused.statusCode).toBe(422);
    expect(json(reused)).toMatchObject({ code: 'idempotency_key_reused', status: 422 });
    const after = await jobCounts();
    expect(Object.values(after).reduce((a, b) => a + b, 0)).toBe(
      Object.values(before).reduce((a, b) => a + b, 0),
    );
  });

  it('scopes keys per API key: another caller with the same key gets its own job', async () => {
    const other = await createApiKey(ctx.api.db, { name: 'other-pms', scopes: ['pms'] });
    const headers = { 'idempotency-key': 'shared-key' };
    const a = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers,
      payload: product('I-3'),
    });
    const b = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      key: other.key,
      headers,
      payload: product('I-4'),
    });
    expect(b.statusCode).toBe(202);
    expect(json(b).id).not.toBe(json(a).id);
  });

  it('rejects an Idempotency-Key longer than 255 characters', async () => {
    const res = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: { 'idempotency-key': 'k'.repeat(256) },
      payload: product('I-5'),
    });
    expect(res.statusCode).toBe(400);
    expect(json(res).errors[0]).toMatchObject({ in: 'headers', path: 'idempotency-key' });
  });
});

describe('Prefer: wait', () => {
  it('answers 202 with the current state when the job outlives the wait, and never hangs', async () => {
    await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: { prefer: 'wait=5' },
      payload: product('W-1'),
    });
    // Hold the row lock so the update job cannot finish within the 1 s wait.
    const trx = await ctx.api.db.transaction();
    await trx('products').where({ sku: 'W-1' }).forUpdate();
    const started = Date.now();
    const res = await ctx.request({
      method: 'PUT',
      url: '/api/pms/products/W-1',
      headers: { prefer: 'wait=1', 'if-match': '1' },
      payload: { name: 'Mug 2', price: { amount: 1200, currency: 'EUR' } },
    });
    const elapsed = Date.now() - started;
    await trx.rollback();
    expect(res.statusCode).toBe(202);
    expect(res.headers['preference-applied']).toBeUndefined();
    expect(json(res).state).toMatch(/waiting|active/);
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect((await ctx.waitForJob(json(res).id)).state).toBe('completed');
  });

  it('answers with the outcome and Preference-Applied once the job finishes', async () => {
    const res = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: { prefer: 'wait=10' },
      payload: product('W-2'),
    });
    expect(res.statusCode).toBe(201);
    expect(res.headers['preference-applied']).toBe('wait=10');
    expect(res.headers.location).toMatch(/^\/api\/jobs\/products-/);
  });
});

describe('validation and HTTP errors', () => {
  it('lists every field error, answers problem+json, and enqueues nothing', async () => {
    const before = await jobCounts();
    const res = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      payload: { sku: 'bad sku!', name: '', price: { amount: 1.5, currency: 'XXXX' }, extra: 1 },
    });
    expect(res.statusCode).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    const body = json(res);
    expect(body).toMatchObject({ code: 'validation_failed', status: 400, title: expect.any(String) });
    expect(body.type).toBe('urn:stockflow:problem:validation_failed');
    expect(body.errors.map((e: { path: string }) => e.path)).toEqual(
      expect.arrayContaining(['sku', 'name', 'price.amount', 'price.currency']),
    );
    expect(await jobCounts()).toEqual(before);
  });

  it('answers 400 for malformed JSON', async () => {
    const res = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: { 'content-type': 'application/json' },
      payload: '{"sku": ',
    });
    expect(res.statusCode).toBe(400);
    expect(json(res).code).toBe('malformed_json');
  });

  it('answers 413 for a body over 1 MiB', async () => {
    const res = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ ...product('BIG'), description: 'x'.repeat(1024 * 1024) }),
    });
    expect(res.statusCode).toBe(413);
    expect(json(res).code).toBe('payload_too_large');
  });

  it('answers 404 for an unknown route and 405 with Allow for a wrong method', async () => {
    const unknown = await ctx.request({ method: 'GET', url: '/api/pms/nothing-here' });
    expect(unknown.statusCode).toBe(404);
    expect(json(unknown).code).toBe('not_found');
    const wrong = await ctx.request({ method: 'PATCH', url: '/api/pms/products/ABC' });
    expect(wrong.statusCode).toBe(405);
    expect(wrong.headers.allow).toContain('PUT');
    expect(json(wrong).code).toBe('method_not_allowed');
  });
});

describe('authentication', () => {
  it('answers 401 without a key or with an unknown one', async () => {
    const none = await ctx.request({ method: 'GET', url: '/api/pms/products', key: null });
    expect(none.statusCode).toBe(401);
    expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
    const unknown = await ctx.request({ method: 'GET', url: '/api/pms/products', key: 'sf_not-a-key' });
    expect(unknown.statusCode).toBe(401);
    expect(json(unknown).code).toBe('unauthorized');
  });

  it('answers 401 once a key is revoked', async () => {
    const doomed = await createApiKey(ctx.api.db, { name: 'doomed', scopes: ['pms'] });
    expect((await ctx.request({ method: 'GET', url: '/api/pms/products', key: doomed.key })).statusCode).toBe(
      200,
    );
    await revokeApiKey(ctx.api.db, 'doomed');
    ctx.api.keys.flush(); // what the revoke command's Redis message does in every web process
    expect((await ctx.request({ method: 'GET', url: '/api/pms/products', key: doomed.key })).statusCode).toBe(
      401,
    );
  });

  it('flushes cached keys when a revocation is announced on Redis', async () => {
    const doomed = await createApiKey(ctx.api.db, { name: 'doomed-2', scopes: ['pms'] });
    expect((await ctx.request({ method: 'GET', url: '/api/pms/products', key: doomed.key })).statusCode).toBe(
      200,
    );
    await revokeApiKey(ctx.api.db, 'doomed-2');
    await ctx.api.redis.publish(`${ctx.config.QUEUE_PREFIX}:api-keys:changed`, 'revoked');
    const deadline = Date.now() + 5000;
    let status = 200;
    while (status === 200 && Date.now() < deadline) {
      status = (await ctx.request({ method: 'GET', url: '/api/pms/products', key: doomed.key })).statusCode;
    }
    expect(status).toBe(401);
  });

  it('answers 403 when the key lacks the scope, and lets admin keys in everywhere', async () => {
    const board = await ctx.request({ method: 'GET', url: '/admin/queues', key: ctx.pmsKey });
    expect(board.statusCode).toBe(403);
    expect(json(board).code).toBe('forbidden');
    const admin = await ctx.request({ method: 'GET', url: '/api/pms/products', key: ctx.adminKey });
    expect(admin.statusCode).toBe(200);
  });

  it('records when a key was last used', async () => {
    const row = await ctx.api.db('api_keys').where({ name: 'test-pms' }).first();
    expect(row.last_used_at).toBeInstanceOf(Date);
  });
});

describe('health, docs and request ids', () => {
  it('reports liveness and readiness without a key', async () => {
    expect((await ctx.request({ method: 'GET', url: '/healthz', key: null })).statusCode).toBe(200);
    const ready = await ctx.request({ method: 'GET', url: '/readyz', key: null });
    expect(json(ready)).toEqual({ status: 'ready', postgres: 'ok', redis: 'ok' });
  });

  it('serves OpenAPI 3 generated from the zod schemas', async () => {
    const res = await ctx.request({ method: 'GET', url: '/docs/json' });
    const doc = json(res);
    expect(doc.openapi).toMatch(/^3\./);
    const create = doc.paths['/api/pms/products'].post;
    expect(create.requestBody.content['application/json'].schema.required).toEqual(
      expect.arrayContaining(['sku', 'name', 'price']),
    );
    expect(Object.keys(create.responses)).toEqual(expect.arrayContaining(['201', '202']));
  });

  it('carries the caller request id into the job', async () => {
    const res = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: { 'x-request-id': 'req-trace-42' },
      payload: product('R-1'),
    });
    expect(res.headers['x-request-id']).toBe('req-trace-42');
    const job = await ctx.api.queues.products.getJob(json(res).id);
    expect(job?.data.meta).toMatchObject({ requestId: 'req-trace-42', actor: 'test-pms' });
  });
});

describe('metrics', () => {
  it('serves Prometheus metrics to admin keys only, with request durations and queue counts', async () => {
    expect((await ctx.request({ method: 'GET', url: '/metrics', key: null })).statusCode).toBe(401);
    expect((await ctx.request({ method: 'GET', url: '/metrics', key: ctx.pmsKey })).statusCode).toBe(403);
    const res = await ctx.request({ method: 'GET', url: '/metrics', key: ctx.adminKey });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.body).toMatch(
      /stockflow_http_request_duration_seconds_count\{method="POST",route="\/api\/pms\/products",status="202"\} \d+/,
    );
    expect(res.body).toMatch(/stockflow_queue_jobs\{queue="products",state="completed"\} [1-9]\d*/);
    expect(res.body).toContain('stockflow_process_cpu_seconds_total');
  });
});
