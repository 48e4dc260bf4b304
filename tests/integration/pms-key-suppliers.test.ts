import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MockSupplier, startMockSupplier } from '../../scripts/mock-supplier.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { noPrivateHostName, privateHostName } from '../helpers/private-host.js';
import { rawRequest } from '../helpers/raw-http.js';
import { expectIncomingMatchesLines, reorderApi, until } from '../helpers/reorder.js';

/**
 * Issue 16, suppliers and purchase orders, as an attacker holding a `pms` key (or none) would try
 * it against a listening API, the suppliers being real HTTP servers on 127.0.0.1:
 * - HIGH: moving a supplier's apiUrl to another host to have its api key sent there, registering
 *   suppliers, and reading what a URL answered through the purchase order's attempts;
 * - MEDIUM: a supplier accepting more than ordered (or a sku not on the order);
 * - MEDIUM: a long answer turning into a second order for the same need;
 * - LOW: a keep-alive socket opened for a supplier carrying a webhook past the address guard.
 */

let ctx: TestContext;
let api: ReturnType<typeof reorderApi>;
let base: string;
let port: number;
let supplier: MockSupplier;
let other: Recorder;
const acmeKey = 'acme-live-key-0001';

/** A server on 127.0.0.1 that records every request and answers like an echo service (httpbin's /anything). */
interface Recorder {
  url: string;
  requests: { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }[];
  close(): Promise<void>;
}

async function startRecorder(
  host = '127.0.0.1',
  answer?: (req: http.IncomingMessage, body: string) => { status: number; body: string },
): Promise<Recorder> {
  const requests: Recorder['requests'] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const out = answer?.(req, body) ?? {
        status: 200,
        body: JSON.stringify({ headers: req.headers, url: req.url, data: body }),
      };
      res.writeHead(out.status, { 'content-type': 'application/json' });
      res.end(out.body);
    });
  });
  // Idle keep-alive sockets stay open long enough for a test to reuse them.
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port: listening } = server.address() as AddressInfo;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${listening}`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

beforeAll(async () => {
  ctx = await createTestContext({
    workers: true,
    env: {
      SUPPLIER_ALLOW_PRIVATE_TARGETS: 'true',
      REORDER_SCAN_INTERVAL_MS: '100',
      SUPPLIER_BACKOFF_MS: '50',
      SUPPLIER_BACKOFF_MAX_MS: '200',
      SUPPLIER_SEND_ATTEMPTS: '3',
      WEBHOOK_RELAY_INTERVAL_MS: '100',
    },
  });
  api = reorderApi(ctx);
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  port = (ctx.app.server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
  supplier = await startMockSupplier({ apiKey: acmeKey });
  other = await startRecorder();
});
afterAll(async () => {
  await supplier?.close();
  await other?.close();
  if (ctx) await expectIncomingMatchesLines(ctx);
  await ctx?.close();
});

/** One request over the socket; `key` null sends none. Answers the status, content type and JSON. */
async function call(
  method: string,
  path: string,
  options: { key?: string | null; body?: unknown; wait?: boolean } = {},
) {
  const key = options.key === undefined ? ctx.pmsKey : options.key;
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(options.wait ? { prefer: 'wait=20' } : {}),
    },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await res.text();
  return {
    status: res.status,
    type: res.headers.get('content-type') ?? '',
    text,
    json: text ? JSON.parse(text) : undefined,
  };
}

/** The problem document of a refusal: the status, problem+json, and the stable code. */
function expectProblem(res: Awaited<ReturnType<typeof call>>, status: number, code: string) {
  expect(res.status, res.text).toBe(status);
  expect(res.type).toMatch(/^application\/problem\+json/);
  expect(res.json).toMatchObject({ status, code });
}

const supplierRow = (code: string) => ctx.api.db('suppliers').where({ code }).first();
const ordersOf = (code: string) =>
  ctx.api.db('purchase_orders').where({ supplier_code: code }).orderBy('number');
const ordersOnce = (code: string, status: string, n = 0) =>
  until(async () => {
    const orders = await ordersOf(code);
    return orders[n]?.status === status ? orders : undefined;
  });
/** The Idempotency-Keys of every request the supplier got for orders of this sku. */
const keysAtSupplier = (sku: string) =>
  supplier.received.filter((r) => JSON.stringify(r.body).includes(`"${sku}"`)).map((r) => r.idempotencyKey);
const lastCheck = (sku: string) =>
  ctx.api
    .db('reorder_rule_checks')
    .join('reorder_rules', 'reorder_rules.id', 'reorder_rule_checks.rule_id')
    .where({ sku })
    .first('outcome', 'skip_reason', 'purchase_order_id');

async function register(code: string, apiUrl: string, apiKey = acmeKey) {
  const res = await call('POST', '/api/pms/suppliers', {
    key: ctx.adminKey,
    body: { code, name: code, apiUrl, apiKey, leadTimeDays: 3 },
  });
  expect(res.status, res.text).toBe(201);
  return res.json;
}

describe('without a key', () => {
  it('every supplier and purchase-order route answers 401 problem+json, over a raw socket', async () => {
    const id = '00000000-0000-4000-8000-000000000000';
    for (const [method, target] of [
      ['GET', '/api/pms/suppliers'],
      ['POST', '/api/pms/suppliers'],
      ['GET', '/api/pms/suppliers/acme'],
      ['PUT', '/api/pms/suppliers/acme'],
      ['GET', `/api/pms/purchase-orders/${id}`],
      ['POST', `/api/pms/purchase-orders/${id}/resolve`],
      ['POST', `/api/pms/purchase-orders/${id}/cancel`],
    ] as const) {
      const res = await rawRequest(port, {
        method,
        target,
        body: method === 'GET' ? undefined : JSON.stringify({ action: 'resend' }),
      });
      expect(res.status, `${method} ${target}`).toBe(401);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(res.body)).toMatchObject({ code: 'unauthorized' });
    }
  });
});

describe('HIGH: supplier credentials are written by admin keys only', () => {
  it('refuses a pms key that registers a supplier (403 forbidden); nothing is stored', async () => {
    const res = await call('POST', '/api/pms/suppliers', {
      body: { code: 'rogue', name: 'Rogue', apiUrl: other.url, apiKey: 'rogue-key-123', leadTimeDays: 1 },
    });
    expectProblem(res, 403, 'forbidden');
    expect(await supplierRow('rogue')).toBeUndefined();
    expect(other.requests).toHaveLength(0);
  });

  it("never sends a supplier's api key to a host a pms key (or an admin key without the key) names", async () => {
    await register('acme', supplier.url);
    const before = await supplierRow('acme');
    const move = { name: 'ACME', apiUrl: `${other.url}/collect`, leadTimeDays: 3 };

    // The pms key may not move the apiUrl, with or without an api key of its own.
    expectProblem(await call('PUT', '/api/pms/suppliers/acme', { body: move }), 403, 'forbidden');
    const withKey = await call('PUT', '/api/pms/suppliers/acme', {
      body: { ...move, apiKey: 'attacker-key-1' },
    });
    expectProblem(withKey, 403, 'forbidden');
    expect(withKey.json.details).toMatchObject({ scope: 'admin', fields: ['apiKey'] });
    // An admin key may, but a new origin needs the key for it in the same request.
    const admin = await call('PUT', '/api/pms/suppliers/acme', { key: ctx.adminKey, body: move });
    expectProblem(admin, 422, 'api_key_required');
    expect(admin.text).not.toContain(acmeKey);
    expect(await supplierRow('acme')).toEqual(before);

    // A rule due at once: the order goes to the supplier the shop registered, and nowhere else.
    await api.product('EXFIL');
    const rule = await call('PUT', '/api/pms/inventory/reorder-rules', {
      wait: true,
      body: { sku: 'EXFIL', location: 'default', supplier: 'acme', reorderPoint: 5, reorderQuantity: 10 },
    });
    expect(rule.status, rule.text).toBe(200);
    const [order] = await ordersOnce('acme', 'acknowledged');
    expect(supplier.received.filter((r) => r.idempotencyKey === `stockflow-po-${order.id}`)).toMatchObject([
      { apiKeyValid: true, signatureValid: true },
    ]);
    expect(other.requests).toHaveLength(0);
  });

  it('lets a pms key change the other settings, and shows it the apiUrl without its query', async () => {
    await register('tokened', `${supplier.url}?token=query-secret-0001`);
    const shown = await call('GET', '/api/pms/suppliers/tokened');
    expect(shown.json.apiUrl).toBe(supplier.url);
    expect((await call('GET', '/api/pms/suppliers')).text).not.toContain('query-secret-0001');
    const events = await call('GET', '/api/pms/events?after=0&types=supplier.*');
    expect(events.status).toBe(200);
    expect(events.text).not.toContain('query-secret-0001');
    expect((await call('GET', '/api/pms/suppliers/tokened', { key: ctx.adminKey })).json.apiUrl).toBe(
      `${supplier.url}?token=query-secret-0001`,
    );

    // apiUrl left out, or sent back as shown: the settings change, the credentials stay.
    const renamed = await call('PUT', '/api/pms/suppliers/tokened', {
      body: { name: 'Renamed', leadTimeDays: 9, active: false },
    });
    expect(renamed.status, renamed.text).toBe(200);
    expect(renamed.json).toMatchObject({
      name: 'Renamed',
      leadTimeDays: 9,
      active: false,
      apiUrl: supplier.url,
    });
    const same = await call('PUT', '/api/pms/suppliers/tokened', {
      body: { name: 'Renamed', apiUrl: shown.json.apiUrl, leadTimeDays: 9, active: true },
    });
    expect(same.status, same.text).toBe(200);
    expect(await supplierRow('tokened')).toMatchObject({
      api_url: `${supplier.url}?token=query-secret-0001`,
      active: true,
      version: 3,
    });
  });

  it('lets an admin key move a supplier: a new origin with its key, a new path on the same origin without', async () => {
    await register('moving', supplier.url);
    const sealed = (await supplierRow('moving')).api_key;
    const path = await call('PUT', '/api/pms/suppliers/moving', {
      key: ctx.adminKey,
      body: { name: 'M', apiUrl: `${supplier.url}/v2`, leadTimeDays: 3 },
    });
    expect(path.status, path.text).toBe(200);
    expect((await supplierRow('moving')).api_key).toBe(sealed);
    const moved = await call('PUT', '/api/pms/suppliers/moving', {
      key: ctx.adminKey,
      body: { name: 'M', apiUrl: `${other.url}/po`, apiKey: 'the-new-hosts-key', leadTimeDays: 3 },
    });
    expect(moved.status, moved.text).toBe(200);
    expect(moved.json.apiUrl).toBe(`${other.url}/po`);
    expect((await supplierRow('moving')).api_key).not.toBe(sealed);
  });
});

describe('HIGH: what a supplier URL answers is shown redacted and bounded', () => {
  it('an answer that echoes the request (an echo service as apiUrl) shows neither the api key nor the signature', async () => {
    const echo = await startRecorder();
    try {
      await register('echo', `${echo.url}/anything`, 'echo-secret-key-42');
      await api.product('ECHO');
      await api.rule({ sku: 'ECHO', supplier: 'echo', reorderPoint: 1, reorderQuantity: 3 });
      const [order] = await ordersOnce('echo', 'unresolved');
      const sent = echo.requests[0]!;
      expect(sent.headers['x-api-key']).toBe('echo-secret-key-42');
      const signature = String(sent.headers['x-stockflow-signature']).replace(/^v1=/, '');

      const po = await call('GET', `/api/pms/purchase-orders/${order.id}`);
      expect(po.status).toBe(200);
      expect(po.json.attempts).toMatchObject([{ statusCode: 200, outcome: 'protocol_error' }]);
      const excerpt: string = po.json.attempts[0].responseExcerpt;
      expect(excerpt.length).toBeLessThanOrEqual(300);
      expect(excerpt).toContain('[redacted]');
      expect(po.json.failure).toMatchObject({ reason: 'protocol_error', statusCode: 200 });
      const events = await call('GET', '/api/pms/events?after=0&types=purchase_order.*');
      const job = await call('GET', `/api/jobs/reorder-send-${order.id}`);
      expect(job.json).toMatchObject({ state: 'failed', error: { code: 'send_unresolved' } });
      for (const text of [po.text, events.text, job.text]) {
        expect(text).not.toContain('echo-secret-key-42');
        expect(text).not.toContain(signature);
      }
    } finally {
      await echo.close();
    }
  });
});

describe('MEDIUM: a supplier may not accept more than was ordered', () => {
  it('an acceptance of 1e9 against 10 is a protocol error: not acknowledged, incoming unchanged, no receipt, no reorder', async () => {
    await register('greedy', supplier.url);
    supplier.behaviour = { fail: 0, failStatus: 503, leadDays: 3, accept: { OVER: 1_000_000_000 } };
    await api.product('OVER');
    await api.rule({ sku: 'OVER', supplier: 'greedy', reorderPoint: 5, reorderQuantity: 10 });
    const [order] = await ordersOnce('greedy', 'unresolved');
    const po = await call('GET', `/api/pms/purchase-orders/${order.id}`);
    expect(po.json).toMatchObject({
      status: 'unresolved',
      lines: [{ sku: 'OVER', quantity: 10, acceptedQuantity: null, outstanding: 0 }],
      attempts: [
        {
          statusCode: 200,
          outcome: 'protocol_error',
          error: expect.stringContaining('accepts 1000000000 of OVER, more than the 10 ordered'),
        },
      ],
    });
    expect(await api.level('OVER')).toMatchObject({ incoming: 0 });
    expectProblem(
      await call('POST', `/api/pms/purchase-orders/${order.id}/receive`, {
        wait: true,
        body: { lines: [{ sku: 'OVER', quantity: 1000 }] },
      }),
      409,
      'invalid_transition',
    );

    // The need is not ordered again while the order is unresolved, however the stock moves.
    supplier.behaviour = { fail: 0, failStatus: 503, leadDays: 3 };
    await api.adjust('OVER', 1, 'found');
    expect(
      await until(async () => {
        const check = await lastCheck('OVER');
        return check?.skip_reason === 'purchase_order_unresolved' ? check : undefined;
      }),
    ).toMatchObject({ outcome: 'skipped', purchase_order_id: order.id });
    expect(await ordersOf('greedy')).toHaveLength(1);

    // The operator resolves it with what the supplier confirmed: never more than ordered.
    expectProblem(
      await call('POST', `/api/pms/purchase-orders/${order.id}/resolve`, {
        wait: true,
        body: { action: 'acknowledge', lines: [{ sku: 'OVER', quantity: 11 }] },
      }),
      422,
      'invalid_acceptance',
    );
    const resolved = await call('POST', `/api/pms/purchase-orders/${order.id}/resolve`, {
      wait: true,
      body: { action: 'acknowledge', reference: 'PHONE-1', lines: [{ sku: 'OVER', quantity: 10 }] },
    });
    expect(resolved.status, resolved.text).toBe(200);
    expect(resolved.json).toMatchObject({
      status: 'acknowledged',
      supplierReference: 'PHONE-1',
      failure: null,
      lines: [{ acceptedQuantity: 10, outstanding: 10 }],
    });
    expect(await api.level('OVER')).toMatchObject({ incoming: 10 });
    expectProblem(
      await call('POST', `/api/pms/purchase-orders/${order.id}/resolve`, {
        wait: true,
        body: { action: 'resend' },
      }),
      409,
      'invalid_transition',
    );
  });

  it('an acceptance naming a sku not on the order is a protocol error too', async () => {
    await register('ghostly', supplier.url);
    // Hundreds of skus not on the order: the error names them, within a bound.
    const ghosts = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`GHOST-${i}`, 1]));
    supplier.behaviour = { fail: 0, failStatus: 503, leadDays: 3, accept: { GHOST: 5, ...ghosts } };
    try {
      await api.product('REAL');
      await api.rule({ sku: 'REAL', supplier: 'ghostly', reorderPoint: 5, reorderQuantity: 10 });
      const [order] = await ordersOnce('ghostly', 'unresolved');
      expect(order.failure).toMatchObject({
        reason: 'protocol_error',
        error: expect.stringContaining('accepts GHOST, which is not on the order'),
      });
      expect(order.failure.error.length).toBeLessThanOrEqual(500);
      expect(await api.level('REAL')).toMatchObject({ incoming: 0 });
    } finally {
      supplier.behaviour = { fail: 0, failStatus: 503, leadDays: 3 };
    }
  });
});

describe('MEDIUM: a long answer never becomes a second order', () => {
  it('takes an acceptance longer than 1 KiB whole: acknowledged on the first attempt', async () => {
    await register('verbose', supplier.url);
    supplier.behaviour = { fail: 0, failStatus: 503, leadDays: 3, pad: 4000 };
    try {
      await api.product('LONG');
      await api.rule({ sku: 'LONG', supplier: 'verbose', reorderPoint: 5, reorderQuantity: 10 });
      const [order] = await ordersOnce('verbose', 'acknowledged');
      const po = await call('GET', `/api/pms/purchase-orders/${order.id}`);
      expect(po.json.attempts).toMatchObject([{ attempt: 1, statusCode: 200, outcome: 'acknowledged' }]);
      expect(po.json.attempts[0].responseExcerpt.length).toBeLessThanOrEqual(300);
      expect(await api.level('LONG')).toMatchObject({ incoming: 10 });
    } finally {
      supplier.behaviour = { fail: 0, failStatus: 503, leadDays: 3 };
    }
  });

  it('an answer over 64 KiB leaves the order unresolved at once, and the rule does not order again', async () => {
    await register('huge', supplier.url);
    supplier.behaviour = { fail: 0, failStatus: 503, leadDays: 3, pad: 70_000 };
    await api.product('HUGE');
    await api.rule({ sku: 'HUGE', supplier: 'huge', reorderPoint: 5, reorderQuantity: 10 });
    const [order] = await ordersOnce('huge', 'unresolved');
    supplier.behaviour = { fail: 0, failStatus: 503, leadDays: 3 };
    expect(order.failure).toMatchObject({
      reason: 'protocol_error',
      error: 'the answer is larger than 64 KiB',
      attempts: 1,
    });
    await api.adjust('HUGE', 1, 'found');
    await until(async () => (await lastCheck('HUGE'))?.skip_reason === 'purchase_order_unresolved');
    expect(await ordersOf('huge')).toHaveLength(1);
    expect(keysAtSupplier('HUGE')).toEqual([`stockflow-po-${order.id}`]);
  });

  it('every attempt without an answer: unresolved; the operator sends it again under the same Idempotency-Key', async () => {
    await register('flaky', supplier.url);
    supplier.behaviour = { fail: 3, failStatus: 503, leadDays: 3 };
    await api.product('RESEND');
    await api.rule({ sku: 'RESEND', supplier: 'flaky', reorderPoint: 5, reorderQuantity: 10 });
    const [order] = await ordersOnce('flaky', 'unresolved');
    expect(order.failure).toMatchObject({ reason: 'retries_exhausted', statusCode: 503, attempts: 3 });
    await api.adjust('RESEND', 1, 'found');
    await until(async () => (await lastCheck('RESEND'))?.skip_reason === 'purchase_order_unresolved');

    const resent = await call('POST', `/api/pms/purchase-orders/${order.id}/resolve`, {
      wait: true,
      body: { action: 'resend' },
    });
    expect(resent.status, resent.text).toBe(200);
    expect(resent.json).toMatchObject({ status: 'sent' });
    const [done] = await ordersOnce('flaky', 'acknowledged');
    expect(done.id).toBe(order.id);
    const requests = supplier.received.filter((r) => JSON.stringify(r.body).includes('"RESEND"'));
    expect(requests.map((r) => [r.idempotencyKey, r.status])).toEqual(
      [503, 503, 503, 200].map((status) => [`stockflow-po-${order.id}`, status]),
    );
    expect(await ordersOf('flaky')).toHaveLength(1);
    expect(await api.level('RESEND')).toMatchObject({ incoming: 10 });
  });

  it('a 4xx after an attempt without an answer is unresolved too: the first request may have placed the order', async () => {
    // First a 503 (the order may have gone through behind it), then a refusal of the same key.
    let seen = 0;
    const twoFaced = await startRecorder('127.0.0.1', () =>
      ++seen === 1 ? { status: 503, body: '{}' } : { status: 409, body: '{"error":"key in use"}' },
    );
    try {
      await register('two-faced', `${twoFaced.url}/po`);
      await api.product('TWICE');
      await api.rule({ sku: 'TWICE', supplier: 'two-faced', reorderPoint: 5, reorderQuantity: 10 });
      const [order] = await ordersOnce('two-faced', 'unresolved');
      expect(order.failure).toMatchObject({ reason: 'http_409', statusCode: 409, attempts: 2 });
      await api.adjust('TWICE', 1, 'found');
      await until(async () => (await lastCheck('TWICE'))?.skip_reason === 'purchase_order_unresolved');
      expect(await ordersOf('two-faced')).toHaveLength(1);
      expect(twoFaced.requests).toHaveLength(2);
    } finally {
      await twoFaced.close();
    }
  });

  it('an operator who cancels an unresolved order lets the rule order again at its next movement', async () => {
    await register('down', supplier.url);
    supplier.behaviour = { fail: 3, failStatus: 503, leadDays: 3 };
    await api.product('AGAIN');
    await api.rule({ sku: 'AGAIN', supplier: 'down', reorderPoint: 5, reorderQuantity: 10 });
    const [order] = await ordersOnce('down', 'unresolved');
    const cancelled = await call('POST', `/api/pms/purchase-orders/${order.id}/cancel`, {
      wait: true,
      body: { reason: 'the supplier has no such order (checked by phone)' },
    });
    expect(cancelled.status, cancelled.text).toBe(200);
    expect(cancelled.json).toMatchObject({ status: 'cancelled' });
    await api.adjust('AGAIN', 1, 'found');
    const orders = await ordersOnce('down', 'acknowledged', 1);
    expect(orders[1].id).not.toBe(order.id);
    expect(new Set(keysAtSupplier('AGAIN'))).toEqual(
      new Set([`stockflow-po-${order.id}`, `stockflow-po-${orders[1].id}`]),
    );
  });
});

describe('LOW: one keep-alive pool per address policy', () => {
  it('a socket opened for a supplier (private targets allowed) never carries a webhook (private targets refused)', async (test) => {
    const host = await privateHostName();
    if (!host) {
      test.skip(noPrivateHostName);
      return;
    }
    const { name, address } = host;
    const inside = await startRecorder(address, (req) =>
      req.url === '/po'
        ? { status: 200, body: JSON.stringify({ status: 'accepted', reference: 'IN-1' }) }
        : { status: 200, body: '{}' },
    );
    try {
      const target = `http://${name}:${new URL(inside.url).port}`;
      await register('inside', `${target}/po`);
      await api.product('POOL');
      await api.rule({ sku: 'POOL', supplier: 'inside', reorderPoint: 5, reorderQuantity: 10 });
      await ordersOnce('inside', 'acknowledged');
      expect(inside.requests.map((r) => r.url)).toEqual(['/po']);
      // The supplier's socket is idle in its pool now. The registration check lets the name through;
      // only the connect-time guard stands between a webhook and that private address.
      const endpoint = await call('POST', '/api/webhooks/endpoints', {
        key: ctx.adminKey,
        body: { url: `${target}/hook`, eventTypes: ['product.*'] },
      });
      expect(endpoint.status, endpoint.text).toBe(201);
      await api.product('POOL-2');
      const attempts = await until(async () => {
        const rows = await ctx.api
          .db('webhook_attempts')
          .join('webhook_deliveries', 'webhook_deliveries.id', 'webhook_attempts.delivery_id')
          .where('webhook_deliveries.endpoint_id', endpoint.json.id);
        return rows.length > 0 ? rows : undefined;
      });
      expect(attempts.map((a) => a.outcome)).toEqual(attempts.map(() => 'refused'));
      expect(inside.requests.filter((r) => r.url === '/hook')).toHaveLength(0);
    } finally {
      await inside.close();
    }
  });
});
