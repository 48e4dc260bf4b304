import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MockSupplier, startMockSupplier } from '../../scripts/mock-supplier.js';
import { createSecretBox, generateSecretsKey } from '../../src/secrets.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { expectIncomingMatchesLines, reorderApi, until } from '../helpers/reorder.js';

/** The supplier side against the mock supplier: sale → draft → sent → acknowledged → received. */
let ctx: TestContext;
let api: ReturnType<typeof reorderApi>;
let supplierServer: MockSupplier;
const secretsKey = generateSecretsKey();
const apiKey = 'supplier-key-123';

beforeAll(async () => {
  ctx = await createTestContext({
    workers: true,
    env: {
      SECRETS_KEY: secretsKey,
      SUPPLIER_ALLOW_PRIVATE_TARGETS: 'true',
      REORDER_SCAN_INTERVAL_MS: '100',
      SUPPLIER_BACKOFF_MS: '50',
      SUPPLIER_BACKOFF_MAX_MS: '200',
      SUPPLIER_SEND_ATTEMPTS: '4',
    },
  });
  api = reorderApi(ctx);
  supplierServer = await startMockSupplier({ apiKey });
});
afterAll(async () => {
  await supplierServer?.close();
  await expectIncomingMatchesLines(ctx);
  await ctx.close();
});

const ordersOf = (supplier: string) =>
  ctx.api.db('purchase_orders').where({ supplier_code: supplier }).orderBy('number');
/** The supplier's orders (oldest first) once its n-th order has this status. */
const ordersOnce = (supplier: string, status: string, n = 0) =>
  until(async () => {
    const orders = await ordersOf(supplier);
    return orders[n]?.status === status ? orders : undefined;
  });
const attemptsOf = (id: string) =>
  ctx.api.db('purchase_order_attempts').where({ purchase_order_id: id }).orderBy('attempt');
const eventsOf = (id: string) =>
  ctx.api
    .db('events')
    .where({ aggregate_type: 'purchase_order', aggregate_id: id })
    .orderBy('seq')
    .pluck('type');

describe('suppliers', () => {
  it('seals the api key at rest and never returns it', async () => {
    const created = await api.supplier({
      code: 'sealed',
      apiUrl: supplierServer.url,
      apiKey: 'very-secret-key-1',
    });
    expect(created).not.toHaveProperty('apiKey');
    expect(JSON.stringify(created)).not.toContain('very-secret-key-1');
    const row = await ctx.api.db('suppliers').where({ code: 'sealed' }).first('api_key');
    expect(row.api_key).toMatch(/^sf2:/);
    expect(row.api_key).not.toContain('very-secret-key-1');
    const at = { column: 'suppliers.api_key', row: 'sealed' } as const;
    expect(createSecretBox({ current: Buffer.from(secretsKey, 'base64') }).open(row.api_key, at)).toBe(
      'very-secret-key-1',
    );
    for (const url of ['/api/pms/suppliers/sealed', '/api/pms/suppliers']) {
      const res = await ctx.request({ method: 'GET', url });
      expect(res.statusCode).toBe(200);
      expect(res.body).not.toContain('very-secret-key-1');
      expect(res.body).not.toMatch(/sf[12]:/);
    }
    const event = await ctx.api
      .db('events')
      .where({ type: 'supplier.created', aggregate_id: 'sealed' })
      .first('data');
    expect(JSON.stringify(event.data)).not.toMatch(/sf[12]:/);
  });

  it('answers 201 with Location over a real socket, 409 for a taken code, 404 for an unknown one', async () => {
    const address = await ctx.app.listen({ port: 0, host: '127.0.0.1' });
    const post = (body: Record<string, unknown>) =>
      fetch(`${address}/api/pms/suppliers`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ctx.adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          name: 'S',
          apiUrl: supplierServer.url,
          leadTimeDays: 2,
          apiKey: 'abcdefgh',
          ...body,
        }),
      });
    const created = await post({ code: 'socket-1' });
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe('/api/pms/suppliers/socket-1');
    const followed = await fetch(`${address}${created.headers.get('location')}`, {
      headers: { authorization: `Bearer ${ctx.pmsKey}` },
    });
    expect(await followed.json()).toMatchObject({
      code: 'socket-1',
      leadTimeDays: 2,
      minOrderQuantity: 1,
      orderMultiple: 1,
    });
    const taken = await post({ code: 'socket-1' });
    expect(taken.status).toBe(409);
    expect(taken.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect(await taken.json()).toMatchObject({ code: 'supplier_taken' });
    const invalid = await post({ code: '..', leadTimeDays: 0, apiKey: 'short', apiUrl: 'ftp://x' });
    expect(invalid.status).toBe(400);
    const problem = (await invalid.json()) as { errors: { path: string }[] };
    expect(problem.errors.map((e) => e.path).sort()).toEqual(['apiKey', 'apiUrl', 'code', 'leadTimeDays']);
    const badScheme = await post({ code: 'socket-2', apiUrl: 'ftp://example.com/x' });
    expect(badScheme.status).toBe(400);
    expect(await badScheme.json()).toMatchObject({ code: 'validation_failed', errors: [{ path: 'apiUrl' }] });
    const missing = await fetch(`${address}/api/pms/suppliers/nobody`, {
      headers: { authorization: `Bearer ${ctx.pmsKey}` },
    });
    expect(missing.status).toBe(404);
    const put = await fetch(`${address}/api/pms/suppliers/nobody`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${ctx.pmsKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'S', apiUrl: supplierServer.url, leadTimeDays: 2 }),
    });
    expect(put.status).toBe(404);
  });

  it('PUT replaces the settings and keeps the api key unless a new one is given', async () => {
    await api.supplier({ code: 'replace', apiUrl: supplierServer.url, apiKey: 'first-key-123' });
    const before = await ctx.api.db('suppliers').where({ code: 'replace' }).first('api_key');
    const updated = await api.call('PUT', '/api/pms/suppliers/replace', {
      name: 'Renamed',
      apiUrl: supplierServer.url,
      leadTimeDays: 9,
      orderMultiple: 4,
      expectedVersion: 1,
    });
    expect(updated).toMatchObject({
      name: 'Renamed',
      leadTimeDays: 9,
      orderMultiple: 4,
      minOrderQuantity: 1,
      version: 2,
    });
    expect((await ctx.api.db('suppliers').where({ code: 'replace' }).first('api_key')).api_key).toBe(
      before.api_key,
    );
    const stale = await ctx.request({
      method: 'PUT',
      url: '/api/pms/suppliers/replace',
      payload: { name: 'X', apiUrl: supplierServer.url, leadTimeDays: 1, expectedVersion: 1 },
    });
    expect(stale.statusCode).toBe(409);
    expect(json(stale)).toMatchObject({ code: 'version_conflict', details: { currentVersion: 2 } });
  });
});

describe('from a sale to a received purchase order', () => {
  it('orders, sends (signed, idempotent), is acknowledged, and receives in two parts', async () => {
    supplierServer.behaviour = { fail: 0, failStatus: 503, leadDays: 3 };
    await api.product('CHAIN', 20);
    await api.supplier({
      code: 'chain',
      apiUrl: supplierServer.url,
      apiKey,
      minOrderQuantity: 10,
      orderMultiple: 5,
    });
    const rule = await api.rule({ sku: 'CHAIN', supplier: 'chain', reorderPoint: 10, maxLevel: 50 });
    expect(rule).toMatchObject({
      due: false,
      stock: { onHand: 20, available: 20, incoming: 0 },
      point: { mode: 'fixed', point: 10 },
    });
    const received = supplierServer.received.length;

    await api.sell('CHAIN', 12); // on hand 8: at or below the point of 10
    const [order] = await ordersOnce('chain', 'acknowledged');
    const po = await api.purchaseOrder(order.id);
    // 50 − (8 + 0) = 42, at least 10, rounded up to a multiple of 5 → 45.
    expect(po).toMatchObject({
      supplier: 'chain',
      location: 'default',
      status: 'acknowledged',
      supplierReference: expect.stringMatching(/^SUP-\d{4}$/),
      expectedDate: new Date(Date.now() + 3 * 86_400_000).toISOString().slice(0, 10),
      lines: [
        {
          sku: 'CHAIN',
          quantity: 45,
          acceptedQuantity: 45,
          receivedQuantity: 0,
          outstanding: 45,
          explanation: {
            basis: 'max_level',
            reorderPoint: 10,
            available: 8,
            incoming: 0,
            maxLevel: 50,
            rawQuantity: 42,
            minOrderQuantity: 10,
            orderMultiple: 5,
            quantity: 45,
            text: expect.stringContaining('rounded up to a multiple of 5 → 45'),
          },
        },
      ],
      attempts: [{ attempt: 1, statusCode: 200, outcome: 'acknowledged', error: null }],
    });
    expect(await api.level('CHAIN')).toMatchObject({ on_hand: 8, incoming: 45 });
    expect(await eventsOf(order.id)).toEqual([
      'purchase_order.created',
      'purchase_order.sent',
      'purchase_order.acknowledged',
    ]);

    // The supplier saw one signed request with the api key and an id-derived Idempotency-Key.
    const requests = supplierServer.received.slice(received);
    expect(requests).toHaveLength(1);
    expect(requests[0]).toMatchObject({
      signatureValid: true,
      apiKeyValid: true,
      idempotencyKey: `stockflow-po-${order.id}`,
      body: {
        purchaseOrder: {
          id: order.id,
          number: po.number,
          location: 'default',
          lines: [{ sku: 'CHAIN', quantity: 45 }],
        },
      },
    });

    // The rule now sees incoming: further sales do not order again.
    await api.sell('CHAIN', 1);
    const rules = json(
      await ctx.request({ method: 'GET', url: '/api/pms/inventory/reorder-rules?sku=CHAIN' }),
    );
    expect(rules.items[0]).toMatchObject({
      stock: { onHand: 7, available: 7, incoming: 45, position: 52 },
      due: false,
    });

    const part = await api.call('POST', `/api/pms/purchase-orders/${order.id}/receive`, {
      lines: [{ sku: 'CHAIN', quantity: 20 }],
    });
    expect(part).toMatchObject({
      status: 'partially_received',
      lines: [{ receivedQuantity: 20, outstanding: 25 }],
    });
    expect(await api.level('CHAIN')).toMatchObject({ on_hand: 27, incoming: 25 });

    const over = await ctx.request({
      method: 'POST',
      url: `/api/pms/purchase-orders/${order.id}/receive`,
      headers: { prefer: 'wait=20' },
      payload: { lines: [{ sku: 'CHAIN', quantity: 26 }] },
    });
    expect(over.statusCode).toBe(409);
    expect(json(over)).toMatchObject({
      code: 'over_receipt',
      details: { lines: [{ sku: 'CHAIN', quantity: 26, ordered: 45, received: 20, open: 25 }] },
    });
    const unknown = await ctx.request({
      method: 'POST',
      url: `/api/pms/purchase-orders/${order.id}/receive`,
      headers: { prefer: 'wait=20' },
      payload: { lines: [{ sku: 'NOT-ON-IT', quantity: 1 }] },
    });
    expect(json(unknown)).toMatchObject({ code: 'not_found', details: { skus: ['NOT-ON-IT'] } });

    const rest = await api.call('POST', `/api/pms/purchase-orders/${order.id}/receive`, {
      lines: [{ sku: 'CHAIN', quantity: 25 }],
    });
    expect(rest).toMatchObject({
      status: 'received',
      closedAt: expect.any(String),
      lines: [{ receivedQuantity: 45, outstanding: 0 }],
    });
    expect(await api.level('CHAIN')).toMatchObject({ on_hand: 52, incoming: 0 });
    const receipts = await ctx.api
      .db('stock_movements')
      .where({ sku: 'CHAIN', kind: 'receipt', reference: po.number })
      .pluck('delta');
    expect(receipts).toEqual([20, 25]);

    const again = await ctx.request({
      method: 'POST',
      url: `/api/pms/purchase-orders/${order.id}/receive`,
      headers: { prefer: 'wait=20' },
      payload: { lines: [{ sku: 'CHAIN', quantity: 1 }] },
    });
    expect(json(again)).toMatchObject({
      code: 'invalid_transition',
      details: { currentStatus: 'received', allowed: [] },
    });
    const listed = json(
      await ctx.request({ method: 'GET', url: '/api/pms/purchase-orders?status=received&supplier=chain' }),
    );
    expect(listed.items.map((o: { id: string }) => o.id)).toEqual([order.id]);
  });
});

describe('sending to a supplier', () => {
  it('retries a supplier that fails twice (429 with Retry-After), then records its acceptance', async () => {
    supplierServer.behaviour = {
      fail: 2,
      failStatus: 429,
      retryAfter: 1,
      leadDays: 5,
      accept: { FLAKY: 30 },
    };
    await api.product('FLAKY', 5);
    await api.supplier({ code: 'flaky', apiUrl: supplierServer.url, apiKey });
    await api.rule({ sku: 'FLAKY', supplier: 'flaky', reorderPoint: 5, reorderQuantity: 40 });
    const [order] = await ordersOnce('flaky', 'acknowledged');
    const attempts = await attemptsOf(order.id);
    expect(attempts.map((a) => [a.attempt, a.status_code, a.outcome, a.retry_after_ms])).toEqual([
      [1, 429, 'retry', 1000],
      [2, 429, 'retry', 1000],
      [3, 200, 'acknowledged', null],
    ]);
    // Retry-After was honoured (the backoff alone would have been under 200 ms).
    expect(attempts[1].started_at - attempts[0].started_at).toBeGreaterThanOrEqual(950);
    expect(attempts[2].started_at - attempts[1].started_at).toBeGreaterThanOrEqual(950);
    const job = await ctx.waitForJob(`reorder-send-${order.id}`);
    expect(job).toMatchObject({ state: 'completed', attemptsMade: 3 });
    // Every attempt carried the same body and idempotency key.
    const requests = supplierServer.received.filter((r) => r.idempotencyKey === `stockflow-po-${order.id}`);
    expect(requests).toHaveLength(3);
    expect(new Set(requests.map((r) => JSON.stringify(r.body))).size).toBe(1);
    // The supplier accepted 30 of 40: incoming follows the accepted quantity.
    const po = await api.purchaseOrder(order.id);
    expect(po.lines[0]).toMatchObject({ quantity: 40, acceptedQuantity: 30, outstanding: 30 });
    expect(await api.level('FLAKY')).toMatchObject({ incoming: 30 });
  });

  it('fails at once on a 400 (send_failed, an event), and the rule may order again', async () => {
    supplierServer.behaviour = { fail: 0, failStatus: 503, status: 400, leadDays: 3 };
    await api.product('REFUSED', 3);
    await api.scanned();
    await api.supplier({ code: 'refuses', apiUrl: supplierServer.url, apiKey });
    await api.rule({ sku: 'REFUSED', supplier: 'refuses', reorderPoint: 5, reorderQuantity: 10 });
    const [order] = await ordersOnce('refuses', 'failed');
    const job = await ctx.waitForJob(`reorder-send-${order.id}`);
    expect(job).toMatchObject({ state: 'failed', attemptsMade: 1, error: { code: 'send_failed' } });
    expect(job.error?.details).toMatchObject({
      reason: 'http_400',
      statusCode: 400,
      purchaseOrderId: order.id,
    });
    expect((await attemptsOf(order.id)).map((a) => [a.status_code, a.outcome])).toEqual([[400, 'failed']]);
    expect(order.failure).toMatchObject({ reason: 'http_400', statusCode: 400, attempts: 1 });
    expect(await eventsOf(order.id)).toEqual([
      'purchase_order.created',
      'purchase_order.sent',
      'purchase_order.send_failed',
    ]);
    expect(await api.level('REFUSED')).toMatchObject({ incoming: 0 });

    // Nothing blocks the rule now: the next movement orders again, on a new purchase order.
    supplierServer.behaviour = { fail: 0, failStatus: 503, leadDays: 3 };
    await api.adjust('REFUSED', -1);
    const orders = await ordersOnce('refuses', 'acknowledged', 1);
    expect(orders[1].id).not.toBe(order.id);
    expect(await api.level('REFUSED')).toMatchObject({ incoming: 10 });
  });

  it('records a supplier rejection; cancelling lowers incoming', async () => {
    supplierServer.behaviour = { fail: 0, failStatus: 503, reject: 'discontinued', leadDays: 3 };
    await api.product('REJECT', 1);
    await api.scanned();
    await api.supplier({ code: 'rejects', apiUrl: supplierServer.url, apiKey });
    await api.rule({ sku: 'REJECT', supplier: 'rejects', reorderPoint: 2, reorderQuantity: 10 });
    const [order] = await ordersOnce('rejects', 'rejected');
    expect(order.answer).toMatchObject({ status: 'rejected', reason: 'discontinued' });
    expect(await api.level('REJECT')).toMatchObject({ incoming: 0 });

    supplierServer.behaviour = { fail: 0, failStatus: 503, leadDays: 3 };
    await api.adjust('REJECT', 1, 'found');
    const [, second] = await ordersOnce('rejects', 'acknowledged', 1);
    expect(await api.level('REJECT')).toMatchObject({ incoming: 10 });
    const cancelled = await api.call('POST', `/api/pms/purchase-orders/${second.id}/cancel`, {
      reason: 'ordered by phone',
    });
    expect(cancelled).toMatchObject({
      status: 'cancelled',
      cancelReason: 'ordered by phone',
      lines: [{ outstanding: 0 }],
    });
    expect(await api.level('REJECT')).toMatchObject({ incoming: 0 });
    const twice = await ctx.request({
      method: 'POST',
      url: `/api/pms/purchase-orders/${second.id}/cancel`,
      headers: { prefer: 'wait=20' },
      payload: {},
    });
    expect(json(twice)).toMatchObject({
      code: 'invalid_transition',
      details: { currentStatus: 'cancelled' },
    });
  });

  it('leaves an order unresolved after the last attempt when the supplier keeps failing (retries_exhausted)', async () => {
    // A supplier that answers 503 to everything: each attempt may have reached it.
    const silent = http.createServer((_req, res) => {
      res.writeHead(503);
      res.end('down');
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/po`;
    try {
      await api.product('DOWN', 1);
      await api.supplier({ code: 'down', apiUrl: url, apiKey });
      await api.rule({ sku: 'DOWN', supplier: 'down', reorderPoint: 2, reorderQuantity: 10 });
      const [order] = await ordersOnce('down', 'unresolved');
      expect((await attemptsOf(order.id)).map((a) => a.outcome)).toEqual([
        'retry',
        'retry',
        'retry',
        'failed',
      ]);
      expect(order.failure).toMatchObject({ reason: 'retries_exhausted', statusCode: 503, attempts: 4 });
      expect(order.closed_at).toBeNull();
      expect(await ctx.waitForJob(`reorder-send-${order.id}`)).toMatchObject({
        state: 'failed',
        attemptsMade: 4,
        error: { code: 'send_unresolved', details: { reason: 'retries_exhausted' } },
      });
      expect(await eventsOf(order.id)).toEqual([
        'purchase_order.created',
        'purchase_order.sent',
        'purchase_order.unresolved',
      ]);
      expect(await api.level('DOWN')).toMatchObject({ incoming: 0 });
    } finally {
      silent.closeAllConnections();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});

describe('OpenAPI', () => {
  it('documents every reordering route with examples', async () => {
    const res = await ctx.request({ method: 'GET', url: '/docs/json' });
    expect(res.statusCode).toBe(200);
    type Media = {
      example?: unknown;
      examples?: unknown;
      schema: { example?: unknown; properties?: { items?: { items?: { example?: unknown } } } };
    };
    type Operation = {
      requestBody?: { content?: Record<string, Media> };
      responses: Record<string, { content: Record<string, Media> }>;
    };
    const paths = json(res).paths as Record<string, Record<string, Operation>>;
    const routes: [string, string][] = [
      ['/api/pms/suppliers', 'post'],
      ['/api/pms/suppliers', 'get'],
      ['/api/pms/suppliers/{code}', 'put'],
      ['/api/pms/suppliers/{code}', 'get'],
      ['/api/pms/inventory/reorder-rules', 'put'],
      ['/api/pms/inventory/reorder-rules', 'get'],
      ['/api/pms/purchase-orders', 'get'],
      ['/api/pms/purchase-orders/{id}', 'get'],
      ['/api/pms/purchase-orders/{id}/receive', 'post'],
      ['/api/pms/purchase-orders/{id}/cancel', 'post'],
      ['/api/pms/purchase-orders/{id}/resolve', 'post'],
    ];
    for (const [path, method] of routes) {
      const operation = paths[path]?.[method];
      expect(operation, `${method} ${path}`).toBeDefined();
      const body = operation!.requestBody?.content?.['application/json'];
      if (method !== 'get')
        expect(body?.example ?? body?.examples, `${method} ${path} body example`).toBeDefined();
      const ok = operation!.responses['200'] ?? operation!.responses['201'];
      const schema = ok!.content['application/json']!.schema;
      const example = schema.example ?? schema.properties?.items?.items?.example;
      expect(example, `${method} ${path} response example`).toBeDefined();
    }
  });
});
