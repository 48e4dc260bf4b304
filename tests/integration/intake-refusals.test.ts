import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitJob } from '../../src/api/submit-job.js';
import type { AnyJob } from '../../src/queues/job.js';
import { productJobs } from '../../src/queues/products.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { multipart, noiseJpeg } from '../helpers/images.js';
import { rawRequest } from '../helpers/raw-http.js';

/**
 * Input that can never be stored is refused at intake, over a real socket: never enqueued (and
 * so never retried against Postgres).
 */

let ctx: TestContext;
let port: number;
beforeAll(async () => {
  ctx = await createTestContext();
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  port = (ctx.app.server.address() as AddressInfo).port;
});
afterAll(() => ctx?.close());

const queued = async () => {
  let total = 0;
  for (const queue of Object.values(ctx.api.queues)) {
    const counts = await queue.getJobCounts(
      'waiting',
      'active',
      'delayed',
      'completed',
      'failed',
      'prioritized',
    );
    total += Object.values(counts).reduce((a, b) => a + b, 0);
  }
  return total;
};

/** POSTs raw JSON text (so escapes such as \ud800 reach the server as written). */
const post = (target: string, body: string, key = ctx.pmsKey) =>
  rawRequest(port, { method: 'POST', target, body, headers: { authorization: `Bearer ${key}` } });

describe('strings Postgres cannot store', () => {
  it.each([
    ['NUL in a name', '{"sku":"N-1","name":"Mu\\u0000g","price":{"amount":1,"currency":"EUR"}}', 'name'],
    [
      'lone high surrogate',
      '{"sku":"N-2","name":"Mug \\ud800","price":{"amount":1,"currency":"EUR"}}',
      'name',
    ],
    [
      'lone low surrogate',
      '{"sku":"N-3","name":"\\udc00 Mug","price":{"amount":1,"currency":"EUR"}}',
      'name',
    ],
    [
      'NUL in an attribute key',
      '{"sku":"N-4","name":"Mug","price":{"amount":1,"currency":"EUR"},"attributes":{"a\\u0000":"x"}}',
      'attributes.a\u0000',
    ],
    [
      'lone surrogate deep in attributes',
      '{"sku":"N-5","name":"Mug","price":{"amount":1,"currency":"EUR"},"attributes":{"list":[1,"\\ud83d"]}}',
      'attributes.list.1',
    ],
  ])('refuses %s with 400 and enqueues nothing', async (_name, body, path) => {
    const before = await queued();
    const response = await post('/api/pms/products', body);
    expect(response.status).toBe(400);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(response.body)).toMatchObject({
      code: 'validation_failed',
      errors: [{ in: 'body', path, message: expect.stringMatching(/NUL|surrogate/) }],
    });
    expect(await queued()).toBe(before);
  });

  it('accepts a well-formed pair (an emoji) and refuses NUL in the query string', async () => {
    const ok = await post(
      '/api/pms/products',
      '{"sku":"N-6","name":"Mug \\ud83d\\ude00","price":{"amount":1,"currency":"EUR"}}',
    );
    expect(ok.status).toBe(202);
    const query = await rawRequest(port, {
      method: 'GET',
      target: '/api/pms/products?status=%00',
      headers: { authorization: `Bearer ${ctx.pmsKey}` },
    });
    expect(query.status).toBe(400);
    expect(JSON.parse(query.body)).toMatchObject({
      code: 'validation_failed',
      errors: [{ in: 'querystring' }],
    });
  });
});

describe('deeply nested JSON', () => {
  it('refuses 5,000 levels of attributes with 400 json_too_deep, before parsing', async () => {
    const deep = `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`;
    const before = await queued();
    const response = await post(
      '/api/pms/products',
      `{"sku":"D-1","name":"Mug","price":{"amount":1,"currency":"EUR"},"attributes":${deep}}`,
    );
    expect(response.status).toBe(400);
    expect(JSON.parse(response.body)).toMatchObject({ code: 'json_too_deep', details: { maxDepth: 32 } });
    expect(await queued()).toBe(before);
    // Brackets inside strings do not count.
    const text = await post(
      '/api/pms/products',
      `{"sku":"D-2","name":"${'['.repeat(200)}","price":{"amount":1,"currency":"EUR"}}`,
    );
    expect(text.status).toBe(202);
  });

  it('still answers malformed JSON and prototype keys with 400', async () => {
    expect(JSON.parse((await post('/api/pms/products', '{"sku":')).body).code).toBe('malformed_json');
    const proto = await post('/api/pms/products', '{"sku":"P-1","__proto__":{"x":1}}');
    expect(proto.status).toBe(400);
  });
});

describe('dot segments as keys', () => {
  it.each(['.', '..'])('refuses %s as a sku and as a location code', async (key) => {
    const product = await post(
      '/api/pms/products',
      JSON.stringify({ sku: key, name: 'x', price: { amount: 1, currency: 'EUR' } }),
    );
    expect(product.status).toBe(400);
    expect(JSON.parse(product.body).errors[0]).toMatchObject({
      path: 'sku',
      message: 'sku must not be . or ..',
    });
    const location = await post('/api/pms/locations', JSON.stringify({ code: key, name: 'Dock' }));
    expect(location.status).toBe(400);
    expect(JSON.parse(location.body).errors[0]).toMatchObject({ path: 'code' });
  });

  it('refuses them in the database too, whoever writes', async () => {
    await expect(ctx.api.db('locations').insert({ code: '..', name: 'x' })).rejects.toThrow(
      /locations_code_not_dot/,
    );
  });
});

describe('multipart intake', () => {
  it('refuses a file name or content type that is too long, or carries NUL, with 400 (not 503)', async () => {
    await ctx.startWorkers(['products']);
    const created = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: { prefer: 'wait=10' },
      payload: { sku: 'M-1', name: 'Mug', price: { amount: 1, currency: 'EUR' } },
    });
    expect(created.statusCode).toBe(201);
    const data = await noiseJpeg(40, 30, 1);
    for (const [filename, contentType, path] of [
      [`${'a'.repeat(300)}.jpg`, 'image/jpeg', 'file.filename'],
      ['photo.jpg', `image/${'a'.repeat(300)}`, 'file.contentType'],
    ] as const) {
      const body = multipart([{ name: 'file', filename, contentType, data }]);
      const response = await ctx.request({
        method: 'POST',
        url: '/api/pms/products/M-1/images',
        headers: body.headers,
        payload: body.payload,
      });
      expect(response.statusCode, path).toBe(400);
      expect(json(response)).toMatchObject({ code: 'validation_failed', errors: [{ path }] });
    }
    const alt = multipart([
      { name: 'alt', value: 'a\u0000b' },
      { name: 'file', filename: 'photo.jpg', contentType: 'image/jpeg', data },
    ]);
    const refused = await ctx.request({
      method: 'POST',
      url: '/api/pms/products/M-1/images',
      headers: alt.headers,
      payload: alt.payload,
    });
    expect(refused.statusCode).toBe(400);
    expect(json(refused).errors[0]).toMatchObject({ path: 'alt' });
  });
});

describe('what an enqueue failure becomes', () => {
  /** A bare route over the context's deps that submits whatever it is given. */
  async function submitting(payload: unknown, job: AnyJob = productJobs.create) {
    const app = Fastify();
    app.addHook('onRequest', async (request) => {
      request.principal = { id: 'test', name: 'test', scopes: ['pms'] };
    });
    app.setErrorHandler((error, _request, reply) => {
      const status = (error as { status?: number }).status ?? 500;
      reply.code(status).send({ code: (error as { code?: string }).code ?? 'internal_error' });
    });
    app.post('/submit', (request, reply) => submitJob(ctx.api, request, reply, job, payload as never));
    const response = await app.inject({ method: 'POST', url: '/submit' });
    await app.close();
    return { status: response.statusCode, body: response.json() };
  }

  it('is a 400 when the job schema refuses the payload, and a 500 (not 503) for any other non-Redis error', async () => {
    expect(await submitting({ sku: 'X-1', name: '', price: { amount: 1, currency: 'EUR' } })).toEqual({
      status: 400,
      body: { code: 'validation_failed' },
    });
    // A job declared for a queue this process has no Queue for: a bug of ours, not Redis.
    const bug = await submitting(
      { sku: 'X-2', name: 'ok', price: { amount: 1, currency: 'EUR' } },
      { ...productJobs.create, queue: 'no-such-queue' as AnyJob['queue'] },
    );
    expect(bug.status).toBe(500);
    expect(bug.body.code).not.toBe('service_unavailable');
  });
});
