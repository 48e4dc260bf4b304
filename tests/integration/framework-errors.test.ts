import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { problemServerOptions, registerErrorHandling } from '../../src/api/errors.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { type RawResponse, rawRequest } from '../helpers/raw-http.js';

/**
 * Every error the framework, its router, its plugins or Node's HTTP parser raises reaches the
 * client as `application/problem+json` with a stable `code`, over a real socket: raw requests,
 * since a client library refuses to send most of these.
 */

let ctx: TestContext;
let port: number;
const auth = () => ({ authorization: `Bearer ${ctx.adminKey}` });

beforeAll(async () => {
  ctx = await createTestContext();
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  port = (ctx.app.server.address() as AddressInfo).port;
});
afterAll(async () => ctx.close());

function expectProblem(response: RawResponse, status: number, code: string) {
  expect({ status: response.status, type: response.headers['content-type'] }).toEqual({
    status,
    type: expect.stringMatching(/^application\/problem\+json/),
  });
  const body = JSON.parse(response.body);
  expect(body).toMatchObject({ status, code, type: `urn:stockflow:problem:${code}` });
  expect(typeof body.title).toBe('string');
  expect(typeof body.detail).toBe('string');
  expect(body.requestId).toBe(response.headers['x-request-id']);
  // Never Fastify's own shape.
  expect(body).not.toHaveProperty('statusCode');
  expect(body.code).not.toMatch(/^FST_/);
  return body;
}

const product = JSON.stringify({ sku: 'FW-1', name: 'x', price: { amount: 1, currency: 'EUR' } });
const post = (headers: Record<string, string | null>, body = product, target = '/api/pms/products') =>
  rawRequest(port, { method: 'POST', target, headers: { ...auth(), ...headers }, body });

describe('router errors (before any route matches)', () => {
  it('a path segment over the parameter length limit: 414 uri_too_long', async () => {
    const response = await rawRequest(port, {
      method: 'GET',
      target: `/api/jobs/${'a'.repeat(5000)}`,
      headers: auth(),
    });
    expectProblem(response, 414, 'uri_too_long');
  });

  it('malformed percent-encoding in the path: 400 malformed_url', async () => {
    const response = await rawRequest(port, {
      method: 'GET',
      target: '/api/pms/products/%E0%A4%A',
      headers: auth(),
    });
    expectProblem(response, 400, 'malformed_url');
  });

  it('an unknown route 404 and a wrong method 405 with Allow', async () => {
    expectProblem(
      await rawRequest(port, { method: 'GET', target: '/api/nope', headers: auth() }),
      404,
      'not_found',
    );
    const wrong = await rawRequest(port, { method: 'PATCH', target: '/api/pms/products', headers: auth() });
    expectProblem(wrong, 405, 'method_not_allowed');
    expect(wrong.headers.allow).toBe('GET, HEAD, POST');
  });
});

describe('HTTP parser errors (answered through clientErrorHandler)', () => {
  it('headers over the size limit: 431 headers_too_large', async () => {
    const response = await rawRequest(port, {
      method: 'GET',
      target: '/healthz',
      headers: { 'x-filler': 'a'.repeat(20_000) },
    });
    expectProblem(response, 431, 'headers_too_large');
  });

  it('a URL over the size limit: 431 headers_too_large (the request line counts)', async () => {
    const response = await rawRequest(port, { method: 'GET', target: `/healthz?q=${'a'.repeat(20_000)}` });
    expectProblem(response, 431, 'headers_too_large');
  });

  it('a Content-Length that is not a number: 400 malformed_request', async () => {
    const response = await post({ 'content-length': 'abc' });
    expectProblem(response, 400, 'malformed_request');
  });

  it('two different Content-Length headers: 400 malformed_request', async () => {
    const length = Buffer.byteLength(product);
    const response = await rawRequest(port, {
      method: 'POST',
      target: `/api/pms/products HTTP/1.1\r\ncontent-length: ${length + 1}\r\nx-ignore:`,
      headers: { ...auth(), 'content-length': String(length) },
      body: product,
    });
    expectProblem(response, 400, 'malformed_request');
  });

  it('a request line that is not HTTP: 400 malformed_request', async () => {
    const response = await rawRequest(port, { method: 'GET', target: '/a b c' });
    expectProblem(response, 400, 'malformed_request');
  });
});

describe('body errors', () => {
  it('a content type no parser takes: 415 unsupported_media_type', async () => {
    expectProblem(await post({ 'content-type': 'text/plain' }), 415, 'unsupported_media_type');
    expectProblem(await post({ 'content-type': 'application/xml' }), 415, 'unsupported_media_type');
  });

  it('a body without a content type: 415 unsupported_media_type', async () => {
    expectProblem(await post({ 'content-type': null }), 415, 'unsupported_media_type');
  });

  it('a malformed content type header: 415 unsupported_media_type', async () => {
    expectProblem(await post({ 'content-type': '/' }), 415, 'unsupported_media_type');
    expectProblem(await post({ 'content-type': ';' }), 415, 'unsupported_media_type');
  });

  it('an empty JSON body: 400 validation_failed (a body is required)', async () => {
    const body = expectProblem(await post({ 'content-length': '0' }, ''), 400, 'validation_failed');
    expect(body.errors).toEqual([expect.objectContaining({ in: 'body', path: '' })]);
  });

  it('invalid JSON and prototype keys: 400 malformed_json', async () => {
    expectProblem(await post({}, '{"sku":'), 400, 'malformed_json');
    expectProblem(await post({}, '{"__proto__":{"x":1}}'), 400, 'malformed_json');
  });

  it('a body over the limit: 413 payload_too_large', async () => {
    const big = JSON.stringify({ sku: 'FW-2', name: 'x'.repeat(ctx.config.BODY_LIMIT_BYTES + 10) });
    expectProblem(await post({}, big), 413, 'payload_too_large');
  });

  it('multipart without a boundary on the image upload: a problem, not a crash', async () => {
    const response = await post(
      { 'content-type': 'multipart/form-data' },
      'x',
      '/api/pms/products/FW-1/images',
    );
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(500);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  });

  it('an unknown event type filter: 422 unknown_event_type naming the closest types', async () => {
    const response = await rawRequest(port, {
      method: 'GET',
      target: '/api/pms/events?types=stock.moevd',
      headers: auth(),
    });
    const body = expectProblem(response, 422, 'unknown_event_type');
    expect(body.suggestions[0]).toBe('stock.moved');
  });
});

it('an async constraint that fails: 500 internal_error without its message', async () => {
  // An async constraint strategy (its deriveConstraint takes a callback) whose lookup fails.
  const tenant = {
    name: 'tenant',
    storage: () => {
      const routes = new Map<string, unknown>();
      return {
        get: (k: string) => routes.get(k) ?? null,
        set: (k: string, v: unknown) => routes.set(k, v),
      };
    },
    deriveConstraint: (_req: unknown, _ctx: unknown, done: (error: Error | null) => void) =>
      done(new Error('secret internals')),
    validate: () => true,
  };
  const app = Fastify({ ...problemServerOptions, constraints: { tenant } as never });
  registerErrorHandling(app);
  app.get('/t', { constraints: { tenant: 'a' } }, async () => 'ok');
  await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const response = await rawRequest((app.server.address() as AddressInfo).port, {
      method: 'GET',
      target: '/t',
    });
    const body = expectProblem(response, 500, 'internal_error');
    expect(response.body).not.toContain('secret internals');
    expect(body.detail).toMatch(/request id/);
  } finally {
    await app.close();
  }
});
