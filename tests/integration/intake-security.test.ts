import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProducts, createTestContext, type TestContext } from '../helpers/context.js';
import { rawRequest } from '../helpers/raw-http.js';

/**
 * Issue 16, intake: URL fields, instants, cursors and order numbers that Postgres would refuse
 * are answered 4xx at intake (never 500), over a real socket.
 */

let ctx: TestContext;
let port: number;
beforeAll(async () => {
  ctx = await createTestContext({ workers: ['products'] });
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  port = (ctx.app.server.address() as AddressInfo).port;
  await createProducts(ctx, ['SEC-1']);
});
afterAll(() => ctx?.close());

const send = (method: string, target: string, body?: unknown, key = ctx.adminKey) =>
  rawRequest(port, {
    method,
    target,
    headers: { authorization: `Bearer ${key}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  }).then((res) => ({ ...res, json: () => JSON.parse(res.body) }));

const expectProblem = (
  res: { status: number; headers: Record<string, string>; body: string },
  status: number,
  fields: Record<string, unknown>,
) => {
  expect(res.status, res.body).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(JSON.parse(res.body)).toMatchObject(fields);
};

/** The three URL fields, each as a request that carries `url` in it. */
let supplierSeq = 0;
const urlFields = [
  {
    field: 'url',
    send: (url: string) => send('POST', '/api/webhooks/endpoints', { url, eventTypes: ['product.*'] }),
    stored: (res: { json(): { url: string } }) => res.json().url,
  },
  {
    field: 'apiUrl',
    send: (url: string) =>
      send('POST', '/api/pms/suppliers', {
        code: `SUP-${++supplierSeq}`,
        name: 'Acme',
        apiUrl: url,
        apiKey: 'supplier-key-0001',
        leadTimeDays: 3,
      }),
    stored: (res: { json(): { apiUrl: string } }) => res.json().apiUrl,
  },
  {
    field: 'sourceUrl',
    send: (url: string) =>
      send('POST', '/api/pms/products/SEC-1/images', { sourceUrl: url, role: 'gallery' }, ctx.pmsKey),
    stored: async (res: { json(): { id: string } }) => {
      const job = await ctx.api.queues.images.getJob(res.json().id);
      return (job!.data as { payload: { source: { url: string } } }).payload.source.url;
    },
  },
] as const;

describe('URL fields (webhook url, supplier apiUrl, image sourceUrl): one schema', () => {
  it.each(urlFields)(
    'accepts an upper-case scheme in $field, stored in its WHATWG form (lower case)',
    async (f) => {
      const res = await f.send('HTTPS://Hooks.Example.com/In?Token=AbC');
      expect(res.status, res.body).toBeLessThan(300);
      expect(await f.stored(res as never)).toBe('https://Hooks.Example.com/In?Token=AbC');
    },
  );

  it.each(urlFields)(
    'refuses spaces, control characters and scheme-relative forms in $field: 400 naming it',
    async (f) => {
      for (const url of [
        ' https://hooks.example.com/in',
        'https://hooks.example.com/in ',
        'https://hooks.example.com/in\t',
        'https://hooks.example.com/a b',
        'https:hooks.example.com/in',
        'https:\\\\hooks.example.com\\in',
        'ftp://hooks.example.com/in',
        'https://',
      ]) {
        const res = await f.send(url);
        expectProblem(res, 400, {
          code: 'validation_failed',
          errors: [expect.objectContaining({ in: 'body', path: f.field })],
        });
      }
    },
  );
});

describe('instants and cursors', () => {
  it.each([
    '/api/pms/inventory/as-of?sku=SEC-1&at=0000-01-01T00:00:00Z',
    '/api/pms/inventory/history?since=0000-01-01T00:00:00Z',
    '/api/pms/inventory/history?until=0000-06-01T00:00:00%2B01:00',
    '/api/pms/orders?since=0000-12-31T23:00:00Z',
  ])('refuses a year-0 instant with 400: %s', async (target) => {
    expectProblem(await send('GET', target), 400, { code: 'validation_failed' });
  });

  it('accepts the bounds Postgres accepts (year 1 and 9999)', async () => {
    for (const target of [
      '/api/pms/inventory/as-of?sku=SEC-1&at=0001-01-01T00:00:00Z',
      '/api/pms/inventory/history?since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59.999Z',
      '/api/pms/orders?since=9999-12-31T23:59:59Z',
    ]) {
      const res = await send('GET', target);
      expect(res.status, `${target}: ${res.body}`).toBe(200);
    }
  });

  const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64url');
  it.each([
    ['/api/ops/alerts', b64('0000-01-01T00:00:00Z|7f1c0e8a-7b59-4c3e-9a52-0f6d6a1f0a11')],
    ['/api/ops/alerts', b64('1|7f1c0e8a-7b59-4c3e-9a52-0f6d6a1f0a11')],
    ['/api/pms/products', b64('\u0000')],
    ['/api/pms/products', 'not a cursor'],
    ['/api/pms/orders', b64('o:x')],
    ['/api/pms/inventory/history', b64('m:-1')],
    ['/api/pms/inventory/reorder-rules', 'abc'],
    ['/api/pms/purchase-orders', 'abc'],
  ])('refuses a malformed cursor on %s with 400 (%s)', async (path, cursor) => {
    const res = await send('GET', `${path}?cursor=${encodeURIComponent(cursor)}`);
    expectProblem(res, 400, {
      code: 'validation_failed',
      errors: [expect.objectContaining({ in: 'querystring', path: 'cursor' })],
    });
  });

  it('still pages with the cursors it hands out', async () => {
    await createProducts(ctx, ['SEC-2', 'SEC-3']);
    const first = (await send('GET', '/api/pms/products?limit=1')).json();
    expect(first.nextCursor).toEqual(expect.any(String));
    const second = await send('GET', `/api/pms/products?limit=1&cursor=${first.nextCursor}`);
    expect(second.status).toBe(200);
    expect(second.json().items[0].sku).not.toBe(first.items[0].sku);
  });
});

describe('order numbers', () => {
  it.each(['.', '..'])(
    'refuses %j as an order number: 400 at intake and a CHECK in the database',
    async (number) => {
      const res = await send(
        'POST',
        '/api/pms/orders',
        { orderNumber: number, currency: 'EUR', lines: [{ sku: 'SEC-1', quantity: 1, unitPrice: 100 }] },
        ctx.pmsKey,
      );
      expectProblem(res, 400, {
        code: 'validation_failed',
        errors: [expect.objectContaining({ path: 'orderNumber' })],
      });
      const insert = await ctx.api.db
        .raw(
          `insert into orders (order_number, currency, reservation_id)
         values (?, 'EUR', gen_random_uuid())`,
          [number],
        )
        .catch((error: { constraint?: string }) => error);
      expect(insert).toMatchObject({ constraint: 'orders_number_not_dot' });
    },
  );
});
