import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type MockSupplier, startMockSupplier } from '../../scripts/mock-supplier.js';
import { generateSecret } from '../../src/webhooks/signing.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { imageUpload, noiseJpeg } from '../helpers/images.js';
import { until } from '../helpers/until.js';
import { type Receiver, startReceiver } from '../helpers/webhook-receiver.js';

/**
 * Every kind of job the API can hand out, followed the way a client follows it: plain HTTP over a
 * real socket, the 202's `Location` polled until the job finishes. The routes come from the app's
 * own OpenAPI document (every operation that answers 202), so a new job route joins the table by
 * itself, and fails this test by name until it has a sample request below.
 */

interface Sample {
  path: string;
  body?: unknown;
  multipart?: { payload: Buffer; headers: Record<string, string> };
  headers?: Record<string, string>;
  /** Key the 202's job id (or what the job made) is remembered under, for later samples. */
  check?: (result: Record<string, unknown>) => void;
}

const sku = 'LOC-SKU-1';
const state: Record<string, string> = {};
let ctx: TestContext;
let base: string;
let mediaDir: string;
let source: http.Server;
let sourceOrigin: string;
let receiver: Receiver;
let photo: Buffer;
let supplier: MockSupplier;
const inboundSecret = generateSecret();

/** The PMS's signed webhooks take no key: each sample is signed the Standard Webhooks way. */
function signedDelivery(path: string, body: unknown): Sample {
  const id = `msg-${path.split('/').pop()}`;
  const at = new Date();
  return {
    path,
    body,
    headers: {
      'webhook-id': id,
      'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
      'webhook-signature': new Webhook(inboundSecret).sign(id, at, JSON.stringify(body)),
    },
    check: (r) => expect(r).toMatchObject({ webhookId: id, applied: true }),
  };
}

/** A purchase order of the sample rule once the mock supplier has acknowledged it. */
const acknowledgedOrder = async (except: string[] = []): Promise<string> => {
  const row = await until(
    'an acknowledged purchase order',
    () =>
      ctx.api.db('purchase_orders').where({ status: 'acknowledged' }).whereNotIn('id', except).first('id'),
    (found) => found !== undefined,
    30_000,
  );
  return row.id as string;
};

/** In the order a client would send them; each builds its request from what earlier ones made. */
const samples: [route: string, build: () => Sample | Promise<Sample>][] = [
  [
    'POST /api/pms/products',
    () => ({
      path: '/api/pms/products',
      body: { sku, name: 'Lamp', price: { amount: 4900, currency: 'EUR' } },
      check: (r) => expect(r).toMatchObject({ sku, version: 1 }),
    }),
  ],
  [
    'PUT /api/pms/products/{sku}',
    () => ({
      path: `/api/pms/products/${sku}`,
      headers: { 'if-match': '"1"' },
      body: { name: 'Desk lamp', price: { amount: 5900, currency: 'EUR' } },
      check: (r) => expect(r).toMatchObject({ name: 'Desk lamp', version: 2 }),
    }),
  ],
  [
    'POST /api/pms/locations',
    () => ({
      path: '/api/pms/locations',
      body: { code: 'LOC-A', name: 'Warehouse A' },
      check: (r) => expect(r).toMatchObject({ code: 'LOC-A' }),
    }),
  ],
  [
    'PUT /api/pms/locations/{code}',
    () => ({
      path: '/api/pms/locations/LOC-A',
      body: { name: 'Warehouse A (north)', priority: 10, active: true },
      check: (r) => expect(r).toMatchObject({ code: 'LOC-A', name: 'Warehouse A (north)' }),
    }),
  ],
  [
    'POST /api/pms/inventory/adjust',
    () => ({
      path: '/api/pms/inventory/adjust',
      body: { movements: [{ sku, location: 'LOC-A', delta: 20, reason: 'received' }] },
      check: (r) => expect(r.movements).toHaveLength(1),
    }),
  ],
  [
    'POST /api/pms/inventory/set',
    () => ({
      path: '/api/pms/inventory/set',
      body: { sku, location: 'LOC-A', onHand: 30 },
      check: (r) => expect(r.movement).toMatchObject({ sku }),
    }),
  ],
  [
    'POST /api/pms/inventory/transfer',
    () => ({
      path: '/api/pms/inventory/transfer',
      body: { sku, from: 'LOC-A', to: 'LOC-B', quantity: 5 },
      check: (r) => expect(r.movements).toHaveLength(2),
    }),
  ],
  [
    'POST /api/pms/inventory/safety-stock',
    () => ({
      path: '/api/pms/inventory/safety-stock',
      body: { sku, location: 'LOC-A', safetyStock: 2 },
      check: (r) => expect(r).toMatchObject({ safetyStock: 2 }),
    }),
  ],
  [
    'POST /api/pms/inventory/reservations',
    () => ({
      path: '/api/pms/inventory/reservations',
      body: { reference: 'order-1', lines: [{ sku, quantity: 1 }] },
      check: (r) => {
        state.reservation = r.id as string;
      },
    }),
  ],
  [
    'POST /api/pms/inventory/reservations/{id}/extend',
    () => ({
      path: `/api/pms/inventory/reservations/${state.reservation}/extend`,
      body: { ttlSeconds: 3600 },
      check: (r) => expect(r).toMatchObject({ id: state.reservation }),
    }),
  ],
  [
    'POST /api/pms/inventory/reservations/{id}/commit',
    () => ({
      path: `/api/pms/inventory/reservations/${state.reservation}/commit`,
      check: (r) => expect(r).toMatchObject({ id: state.reservation, status: 'committed' }),
    }),
  ],
  [
    'POST /api/pms/inventory/reservations/{id}/release',
    async () => {
      const held = await fetchJson('POST', '/api/pms/inventory/reservations', {
        body: { reference: 'order-2', lines: [{ sku, quantity: 1 }] },
        headers: { prefer: 'wait=20' },
      });
      state.released = held.body.id;
      return {
        path: `/api/pms/inventory/reservations/${state.released}/release`,
        check: (r) => expect(r).toMatchObject({ id: state.released, status: 'released' }),
      };
    },
  ],
  [
    'POST /api/pms/products/{sku}/images',
    () => ({
      path: `/api/pms/products/${sku}/images`,
      multipart: imageUpload(photo, { fields: { role: 'main' } }),
      check: (r) => {
        state.image = (r.image as { id: string }).id;
      },
    }),
  ],
  [
    'POST /api/pms/products/{sku}/images/{imageId}/versions',
    async () => ({
      path: `/api/pms/products/${sku}/images/${state.image}/versions`,
      // By URL: the other way in, fetched by the worker from a server on 127.0.0.1.
      body: { sourceUrl: `${sourceOrigin}/second.jpg` },
      check: (r) => expect(r).toMatchObject({ image: { currentVersion: 2 }, deduplicated: false }),
    }),
  ],
  [
    'POST /api/pms/products/{sku}/images/{imageId}/rollback',
    () => ({
      path: `/api/pms/products/${sku}/images/${state.image}/rollback`,
      body: { version: 1 },
      check: (r) => expect(r).toMatchObject({ currentVersion: 1 }),
    }),
  ],
  [
    'DELETE /api/pms/products/{sku}/images/{imageId}',
    async () => {
      const gallery = await fetchJson('POST', `/api/pms/products/${sku}/images`, {
        body: { sourceUrl: `${sourceOrigin}/second.jpg`, role: 'gallery' },
        headers: { prefer: 'wait=20' },
      });
      const imageId = gallery.body.image.id as string;
      return {
        path: `/api/pms/products/${sku}/images/${imageId}`,
        check: (r) => expect(r).toMatchObject({ id: imageId, sku }),
      };
    },
  ],
  [
    'POST /api/pms/products/{sku}/publish',
    () => ({
      path: `/api/pms/products/${sku}/publish`,
      check: (r) => expect(r).toMatchObject({ status: 'published' }),
    }),
  ],
  [
    'POST /api/webhooks/deliveries/{id}/retry',
    async () => {
      await receiver.waitFor((r) => r.processed.size > 0);
      const deliveries = await fetchJson('GET', `/api/webhooks/endpoints/${state.endpoint}/deliveries`, {
        key: ctx.adminKey,
      });
      const delivery = deliveries.body.items[0].id as string;
      return {
        path: `/api/webhooks/deliveries/${delivery}/retry`,
        headers: { authorization: `Bearer ${ctx.adminKey}` },
        check: (r) => expect(r).toMatchObject({ deliveryId: delivery, outcome: 'delivered' }),
      };
    },
  ],
  [
    'POST /api/webhooks/endpoints/{id}/replay',
    () => ({
      path: `/api/webhooks/endpoints/${state.endpoint}/replay`,
      headers: { authorization: `Bearer ${ctx.adminKey}` },
      body: { since: new Date(Date.now() - 3_600_000).toISOString() },
      check: (r) => expect(r.events).toBeGreaterThan(0),
    }),
  ],
  [
    'POST /api/pms/orders',
    () => ({
      path: '/api/pms/orders',
      body: { orderNumber: 'SO-1', currency: 'EUR', lines: [{ sku, quantity: 2, unitPrice: 5900 }] },
      check: (r) => expect(r).toMatchObject({ order: { orderNumber: 'SO-1', status: 'reserved' } }),
    }),
  ],
  [
    'POST /api/pms/orders/{orderNumber}/confirm',
    () => ({
      path: '/api/pms/orders/SO-1/confirm',
      check: (r) => expect(r).toMatchObject({ order: { status: 'confirmed' } }),
    }),
  ],
  [
    'POST /api/pms/orders/{orderNumber}/fulfill',
    () => ({
      path: '/api/pms/orders/SO-1/fulfill',
      body: { lines: [{ sku, quantity: 1 }] },
      check: (r) => expect(r).toMatchObject({ order: { status: 'partially_fulfilled' } }),
    }),
  ],
  [
    'POST /api/pms/orders/{orderNumber}/returns',
    () => ({
      path: '/api/pms/orders/SO-1/returns',
      body: { lines: [{ sku, quantity: 1 }], restock: true },
      check: (r) => expect(r).toMatchObject({ order: { orderNumber: 'SO-1' } }),
    }),
  ],
  [
    'POST /api/pms/orders/{orderNumber}/cancel',
    () => ({
      path: '/api/pms/orders/SO-1/cancel',
      check: (r) => expect(r).toMatchObject({ order: { status: 'cancelled' } }),
    }),
  ],
  [
    'PUT /api/pms/inventory/reorder-rules',
    () => ({
      path: '/api/pms/inventory/reorder-rules',
      // A point far above the stock: the next movement orders from the mock supplier.
      body: { sku, location: 'LOC-A', supplier: 'acme', reorderPoint: 1000, reorderQuantity: 10 },
      check: (r) => expect(r).toMatchObject({ sku, location: 'LOC-A', supplier: 'acme' }),
    }),
  ],
  [
    'POST /api/pms/purchase-orders/{id}/receive',
    async () => {
      await fetchJson('POST', '/api/pms/inventory/adjust', {
        body: { movements: [{ sku, location: 'LOC-A', delta: 1, reason: 'found' }] },
        headers: { prefer: 'wait=20' },
      });
      state.purchaseOrder = await acknowledgedOrder();
      return {
        path: `/api/pms/purchase-orders/${state.purchaseOrder}/receive`,
        body: { lines: [{ sku, quantity: 10 }] },
        check: (r) => expect(r).toMatchObject({ id: state.purchaseOrder, status: 'received' }),
      };
    },
  ],
  [
    'POST /api/pms/purchase-orders/{id}/cancel',
    async () => {
      // The receipt was a movement too: the rule, still below its point, ordered again.
      const next = await acknowledgedOrder([state.purchaseOrder!]);
      return {
        path: `/api/pms/purchase-orders/${next}/cancel`,
        check: (r) => expect(r).toMatchObject({ id: next, status: 'cancelled' }),
      };
    },
  ],
  [
    'POST /api/pms/purchase-orders/{id}/resolve',
    async () => {
      // The supplier accepts more than ordered: the next order is unresolved until resolved here.
      supplier.behaviour = { ...supplier.behaviour, accept: { [sku]: 1_000_000 } };
      await fetchJson('POST', '/api/pms/inventory/adjust', {
        body: { movements: [{ sku, location: 'LOC-A', delta: 1, reason: 'found' }] },
        headers: { prefer: 'wait=20' },
      });
      const { id } = await until(
        'an unresolved purchase order',
        () => ctx.api.db('purchase_orders').where({ status: 'unresolved' }).first('id'),
        (found) => found !== undefined,
        30_000,
      );
      supplier.behaviour = { ...supplier.behaviour, accept: undefined };
      return {
        path: `/api/pms/purchase-orders/${id}/resolve`,
        body: { action: 'acknowledge', reference: 'BY-PHONE-1' },
        check: (r) =>
          expect(r).toMatchObject({ id, status: 'acknowledged', supplierReference: 'BY-PHONE-1' }),
      };
    },
  ],
  [
    'POST /api/pms/webhook/inventory',
    () =>
      signedDelivery('/api/pms/webhook/inventory', {
        type: 'inventory.adjusted',
        timestamp: new Date().toISOString(),
        data: { movements: [{ sku, location: 'LOC-A', delta: 3, reason: 'received' }] },
      }),
  ],
  [
    'POST /api/pms/webhook/order',
    () =>
      signedDelivery('/api/pms/webhook/order', {
        type: 'order.created',
        timestamp: new Date().toISOString(),
        data: { orderNumber: 'SO-PMS-1', currency: 'EUR', lines: [{ sku, quantity: 1, unitPrice: 5900 }] },
      }),
  ],
  [
    'POST /api/pms/webhook/product',
    () =>
      signedDelivery('/api/pms/webhook/product', {
        type: 'product.upserted',
        timestamp: new Date().toISOString(),
        data: { sku: 'PMS-1', name: 'From the PMS', price: { amount: 100, currency: 'EUR' }, version: 3 },
      }),
  ],
  [
    'DELETE /api/pms/products/{sku}',
    () => ({
      path: `/api/pms/products/${sku}`,
      check: (r) => expect(r).toMatchObject({ status: 'archived' }),
    }),
  ],
];

async function fetchJson(
  method: string,
  target: string,
  options: { body?: unknown; headers?: Record<string, string>; key?: string } = {},
) {
  const response = await fetch(`${base}${target}`, {
    method,
    redirect: 'manual',
    headers: {
      authorization: `Bearer ${options.key ?? ctx.pmsKey}`,
      ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...options.headers,
    },
    body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
  });
  const text = await response.text();
  // biome-ignore lint/suspicious/noExplicitAny: a test reads whatever JSON came back
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: response.status, headers: response.headers, body };
}

beforeAll(async () => {
  photo = await noiseJpeg(400, 300, 11);
  const second = await noiseJpeg(500, 300, 12);
  source = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'image/jpeg' }).end(second));
  source.listen(0, '127.0.0.1');
  await once(source, 'listening');
  sourceOrigin = `http://127.0.0.1:${(source.address() as AddressInfo).port}`;
  receiver = await startReceiver();
  supplier = await startMockSupplier({ apiKey: 'acme-key-0001' });
  mediaDir = await mkdtemp(path.join(os.tmpdir(), 'stockflow-media-'));
  ctx = await createTestContext({
    workers: true,
    env: {
      MEDIA_DIR: mediaDir,
      IMAGE_ALLOW_PRIVATE_SOURCES: 'true',
      WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
      WEBHOOK_RELAY_INTERVAL_MS: '100',
      INBOUND_WEBHOOK_SECRET: inboundSecret,
      SUPPLIER_ALLOW_PRIVATE_TARGETS: 'true',
      REORDER_SCAN_INTERVAL_MS: '100',
    },
  });
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(ctx.app.server.address() as AddressInfo).port}`;
  const endpoint = await fetchJson('POST', '/api/webhooks/endpoints', {
    key: ctx.adminKey,
    body: { url: receiver.url, eventTypes: ['product.*'] },
  });
  expect(endpoint.status).toBe(201);
  state.endpoint = endpoint.body.id;
  const acme = await fetchJson('POST', '/api/pms/suppliers', {
    key: ctx.adminKey,
    body: { code: 'acme', name: 'Acme', apiUrl: supplier.url, apiKey: 'acme-key-0001', leadTimeDays: 2 },
  });
  expect(acme.status, JSON.stringify(acme.body)).toBe(201);
  const second2 = await fetchJson('POST', '/api/pms/locations', {
    body: { code: 'LOC-B', name: 'Warehouse B' },
    headers: { prefer: 'wait=20' },
  });
  expect(second2.status).toBe(201);
});

afterAll(async () => {
  await ctx?.close();
  await receiver?.close();
  await supplier?.close();
  source?.close();
  await rm(mediaDir, { recursive: true, force: true });
});

it('follows the Location of every job kind over plain HTTP until the job finishes', async () => {
  const spec = ctx.app.swagger() as { paths: Record<string, Record<string, { responses?: object }>> };
  const jobRoutes = Object.entries(spec.paths).flatMap(([route, operations]) =>
    Object.entries(operations)
      .filter(([, operation]) => operation.responses && '202' in operation.responses)
      .map(([method]) => `${method.toUpperCase()} ${route}`),
  );
  const sampled = new Set(samples.map(([route]) => route));
  const missing = jobRoutes.filter((route) => !sampled.has(route));
  expect(missing, 'job routes without a sample request in tests/integration/job-locations.test.ts').toEqual(
    [],
  );
  expect(
    [...sampled].filter((route) => !jobRoutes.includes(route)),
    'samples of routes that do not answer 202',
  ).toEqual([]);

  const seen = new Set<string>();
  for (const [route, build] of samples) {
    const sample = await build();
    const method = route.split(' ')[0]!;
    const response = await fetch(`${base}${sample.path}`, {
      method,
      redirect: 'manual',
      headers: {
        authorization: `Bearer ${ctx.pmsKey}`,
        'idempotency-key': `follow-${route}`,
        ...(sample.multipart?.headers ??
          (sample.body !== undefined ? { 'content-type': 'application/json' } : {})),
        ...sample.headers,
      },
      body:
        sample.multipart?.payload ?? (sample.body !== undefined ? JSON.stringify(sample.body) : undefined),
    });
    const handle = (await response.json()) as { id: string; queue: string; name: string };
    expect(response.status, `${route}: ${JSON.stringify(handle)}`).toBe(202);
    const location = response.headers.get('location')!;
    expect(location, route).toBe(`/api/jobs/${handle.id}`);
    expect(handle.id, route).toMatch(/^[a-z]+-[A-Za-z0-9_-]{32,40}$/);

    let status: { status: number; body: Record<string, unknown> } | undefined;
    const deadline = Date.now() + 30_000;
    for (let pause = 20; Date.now() < deadline; pause = Math.min(pause * 2, 250)) {
      // The job is read with the key that queued it (webhooks jobs are admin-only: queueReadScopes).
      const polled = await fetch(`${base}${location}`, {
        headers: { authorization: sample.headers?.authorization ?? `Bearer ${ctx.pmsKey}` },
      });
      status = { status: polled.status, body: (await polled.json()) as Record<string, unknown> };
      expect(polled.status, `${route}: GET ${location} answered ${JSON.stringify(status.body)}`).toBe(200);
      expect(polled.headers.get('content-type'), route).toMatch(/^application\/json/);
      if (status.body.state === 'completed' || status.body.state === 'failed') break;
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
    expect(status!.body, route).toMatchObject({
      id: handle.id,
      queue: handle.queue,
      name: handle.name,
      state: 'completed',
      error: null,
      processedAt: expect.any(String),
      finishedAt: expect.any(String),
    });
    expect(status!.body.attemptsMade, route).toBeGreaterThanOrEqual(1);
    sample.check?.(status!.body.result as Record<string, unknown>);
    seen.add(handle.name);
  }
  // Each route gave its own kind of job (the two image uploads share image.process, the three
  // inbound webhooks inbound.pms-event).
  expect(seen.size).toBe(samples.length - 3);
});
