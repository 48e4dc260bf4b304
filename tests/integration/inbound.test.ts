import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inboundJobs } from '../../src/queues/inbound.js';
import { generateSecret } from '../../src/webhooks/signing.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { rawRequest } from '../helpers/raw-http.js';

const current = generateSecret();
const previous = generateSecret();
let ctx: TestContext;
let port: number;
beforeAll(async () => {
  ctx = await createTestContext({
    workers: ['inbound', 'products', 'inventory', 'orders'],
    // Two secrets while rotating: a delivery signed with either verifies.
    env: { INBOUND_WEBHOOK_SECRET: `${current} ${previous}` },
  });
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  port = (ctx.app.server.address() as AddressInfo).port;
});
afterAll(() => ctx.close());

let seq = 0;
const newId = () => `msg_${Date.now()}_${++seq}`;

interface Delivery {
  endpoint: 'product' | 'inventory' | 'order';
  body: string;
  id?: string;
  secret?: string;
  at?: Date;
  headers?: Record<string, string>;
}

/** Signs the exact body (Standard Webhooks) and POSTs it over a real socket, without an API key. */
async function deliver({
  endpoint,
  body,
  id = newId(),
  secret = current,
  at = new Date(),
  headers,
}: Delivery) {
  const signature = new Webhook(secret).sign(id, at, body);
  const response = await rawRequest(port, {
    method: 'POST',
    target: `/api/pms/webhook/${endpoint}`,
    headers: {
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(body)),
      'webhook-id': id,
      'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
      'webhook-signature': signature,
      ...headers,
    },
    body,
  });
  return { ...response, id, json: () => JSON.parse(response.body) };
}
const event = (type: string, data: unknown) =>
  JSON.stringify({ type, timestamp: new Date().toISOString(), data });
const product = (version: number, name: string) =>
  event('product.upserted', {
    sku: 'PMS-1',
    name,
    price: { amount: 1000 + version, currency: 'EUR' },
    version,
  });

async function applied(response: { status: number; json(): { id: string } }) {
  expect(response.status).toBe(202);
  const status = await ctx.waitForJob(response.json().id);
  expect(status.state, JSON.stringify(status.error)).toBe('completed');
  return status;
}

describe('signature', () => {
  it('accepts a valid delivery without an API key: 202 with its job on the inbound queue', async () => {
    const res = await deliver({ endpoint: 'product', body: product(1, 'First') });
    expect(res.headers.location).toMatch(/^\/api\/jobs\/inbound-/);
    expect(res.json()).toMatchObject({ queue: 'inbound', name: 'inbound.pms-event', duplicate: false });
    const status = await applied(res);
    expect(status.result).toMatchObject({
      applied: true,
      type: 'product.upserted',
      result: { sku: 'PMS-1' },
    });
    const row = await ctx.api.db('products').where({ sku: 'PMS-1' }).first();
    expect(row).toMatchObject({ name: 'First', price_amount: 1001 });
    // The change is recorded as made by the webhook's job.
    const created = await ctx.api
      .db('events')
      .where({ type: 'product.created', aggregate_id: 'PMS-1' })
      .first();
    expect(created).toMatchObject({ actor: 'pms-webhook', job_id: res.json().id });
  });

  it('verifies with the previous secret too while the secret rotates', async () => {
    await applied(await deliver({ endpoint: 'product', body: product(2, 'Second'), secret: previous }));
  });

  it('refuses a bad or missing signature, a foreign secret, and a timestamp over 5 minutes off: 401, no job', async () => {
    const before = await ctx.api.queues.inbound.getJobCounts();
    const body = product(3, 'Never');
    const cases = [
      await deliver({ endpoint: 'product', body, secret: generateSecret() }),
      await deliver({ endpoint: 'product', body, headers: { 'webhook-signature': 'v1,AAAA' } }),
      await deliver({ endpoint: 'product', body, at: new Date(Date.now() - 6 * 60_000) }),
      await deliver({ endpoint: 'product', body, at: new Date(Date.now() + 6 * 60_000) }),
      // Signed, then altered: one space more.
      { ...(await deliverAltered(body)) },
      await rawRequest(port, {
        method: 'POST',
        target: '/api/pms/webhook/product',
        headers: { 'content-type': 'application/json' },
        body,
      }),
    ];
    for (const res of cases) {
      expect(res.status, res.body).toBe(401);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(res.body)).toMatchObject({ code: 'invalid_signature' });
    }
    expect(JSON.parse(cases[2]!.body).detail).toMatch(/timestamp too old/i);
    expect(JSON.parse(cases[5]!.body).detail).toMatch(/webhook-id header is missing/);
    expect(await ctx.api.queues.inbound.getJobCounts()).toEqual(before);
    expect((await ctx.api.db('products').where({ sku: 'PMS-1' }).first()).name).toBe('Second');
  });

  it('verifies the raw bytes: whitespace and escapes a re-serialised body would lose still verify', async () => {
    const body = `{ "type" : "product.upserted",\n  "timestamp": "${new Date().toISOString()}",\n  "data": {"sku":"PMS-2","name":"Caf\\u00e9 \u2615","price":{"amount":300,"currency":"EUR"},"version":1} }`;
    await applied(await deliver({ endpoint: 'product', body }));
    expect((await ctx.api.db('products').where({ sku: 'PMS-2' }).first()).name).toBe('Café ☕');
  });
});

async function deliverAltered(body: string) {
  const id = newId();
  const at = new Date();
  return rawRequest(port, {
    method: 'POST',
    target: '/api/pms/webhook/product',
    headers: {
      'content-type': 'application/json',
      'webhook-id': id,
      'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
      'webhook-signature': new Webhook(current).sign(id, at, body),
    },
    body: `${body} `,
  });
}

describe('deduplication by webhook-id', () => {
  it('answers a redelivery 200 with the first job, and adds no second job', async () => {
    const id = newId();
    const body = event('inventory.adjusted', {
      movements: [{ sku: 'PMS-1', location: 'default', delta: 7, reason: 'received' }],
    });
    const first = await deliver({ endpoint: 'inventory', body, id });
    await applied(first);
    const again = await deliver({ endpoint: 'inventory', body, id });
    expect(again.status).toBe(200);
    expect(again.json()).toMatchObject({ id: first.json().id, duplicate: true, state: 'completed' });
    expect(again.headers.location).toBe(first.headers.location);
    const jobs = await ctx.api.queues.inbound.getJobs(['completed', 'waiting', 'active', 'failed']);
    expect(jobs.filter((j) => j.data.payload.webhookId === id)).toHaveLength(1);
    expect(
      (await ctx.api.db('inventory_levels').where({ sku: 'PMS-1', location: 'default' }).first()).on_hand,
    ).toBe(7);
  });

  it('answers a redelivery 200 with the first job while that job is still waiting', async () => {
    const id = newId();
    const body = event('inventory.adjusted', {
      movements: [{ sku: 'PMS-2', location: 'default', delta: 2, reason: 'received' }],
    });
    const before = (await ctx.api.db('inventory_levels').where({ sku: 'PMS-2', location: 'default' }).first())
      .on_hand;
    await ctx.api.queues.inbound.pause();
    try {
      const first = await deliver({ endpoint: 'inventory', body, id });
      expect(first.status).toBe(202);
      const again = await deliver({ endpoint: 'inventory', body, id });
      expect(again.status).toBe(200);
      expect(again.json()).toMatchObject({ id: first.json().id, duplicate: true });
      expect(again.headers.location).toBe(first.headers.location);
    } finally {
      await ctx.api.queues.inbound.resume();
    }
    const jobs = await ctx.api.queues.inbound.getJobs(['completed', 'waiting', 'active', 'failed']);
    expect(jobs.filter((j) => j.data.payload.webhookId === id)).toHaveLength(1);
    await ctx.waitForJob(jobs.find((j) => j.data.payload.webhookId === id)!.id!);
    expect(
      (await ctx.api.db('inventory_levels').where({ sku: 'PMS-2', location: 'default' }).first()).on_hand,
    ).toBe(before + 2);
  });

  it('still applies once after Redis lost the job: the dedupe record is in Postgres', async () => {
    const id = newId();
    const body = event('inventory.adjusted', {
      movements: [{ sku: 'PMS-1', location: 'default', delta: 5, reason: 'received' }],
    });
    const first = await deliver({ endpoint: 'inventory', body, id });
    await applied(first);
    // Redis forgets the job and the delivery's claim (a restart without persistence, say).
    await (await ctx.api.queues.inbound.getJob(first.json().id))!.remove();
    const claimKey = createHash('sha256').update(id).digest('base64url').slice(0, 32);
    expect(await ctx.api.redis.del(`${ctx.config.QUEUE_PREFIX}:inbound:${claimKey}`)).toBe(1);
    const again = await deliver({ endpoint: 'inventory', body, id });
    expect(again.status).toBe(200);
    expect(again.json()).toMatchObject({ id: first.json().id, duplicate: true });
    expect(await ctx.api.queues.inbound.getJob(first.json().id)).toBeUndefined();
    expect(
      (await ctx.api.db('inventory_levels').where({ sku: 'PMS-1', location: 'default' }).first()).on_hand,
    ).toBe(12);
    expect(await ctx.api.db('stock_movements').where({ sku: 'PMS-1', delta: 5 })).toHaveLength(1);
  });

  it('a second job for an applied webhook-id (a race past the intake check) changes nothing', async () => {
    const [record] = await ctx.api
      .db('inbound_deliveries')
      .where({ type: 'inventory.adjusted' })
      .orderBy('applied_at');
    const job = await ctx.api.queues.inbound.add(
      inboundJobs.apply.name,
      {
        payload: {
          webhookId: record.webhook_id,
          timestamp: new Date().toISOString(),
          type: 'inventory.adjusted',
          data: { movements: [{ sku: 'PMS-1', location: 'default', delta: 7, reason: 'received' }] },
        },
        meta: { actor: 'pms-webhook' },
      },
      { jobId: 'inbound-second-job' },
    );
    const status = await ctx.waitForJob(job.id!);
    expect(status.result).toMatchObject({ applied: false, reason: 'already_applied' });
    expect(
      (await ctx.api.db('inventory_levels').where({ sku: 'PMS-1', location: 'default' }).first()).on_hand,
    ).toBe(12);
  });
});

describe('product versions', () => {
  it('applies v11 and not v10 delivered after it, recording a product.sync_conflict with both versions', async () => {
    await applied(await deliver({ endpoint: 'product', body: product(11, 'Eleven') }));
    const stale = await deliver({ endpoint: 'product', body: product(10, 'Ten') });
    const status = await applied(stale);
    expect(status.result).toMatchObject({ applied: false, reason: 'stale_version' });
    const row = await ctx.api.db('products').where({ sku: 'PMS-1' }).first();
    expect(row).toMatchObject({ name: 'Eleven', price_amount: 1011 });
    const equal = await applied(await deliver({ endpoint: 'product', body: product(11, 'Eleven again') }));
    expect(equal.result).toMatchObject({ applied: false });
    const conflicts = await ctx.api.db('events').where({ type: 'product.sync_conflict' }).orderBy('seq');
    expect(conflicts.map((e) => e.data)).toEqual([
      expect.objectContaining({ sku: 'PMS-1', incomingVersion: 10, appliedVersion: 11, webhookId: stale.id }),
      expect.objectContaining({ sku: 'PMS-1', incomingVersion: 11, appliedVersion: 11 }),
    ]);
    expect((await ctx.api.db('inbound_product_versions').where({ sku: 'PMS-1' }).first()).pms_version).toBe(
      11,
    );
  });

  it('archives through product.archived, unless its version is stale', async () => {
    const res = await deliver({
      endpoint: 'product',
      body: event('product.upserted', {
        sku: 'PMS-3',
        name: 'Three',
        price: { amount: 0, currency: 'EUR' },
        status: 'draft',
        version: 1,
      }),
    });
    await applied(res);
    const archived = await applied(
      await deliver({ endpoint: 'product', body: event('product.archived', { sku: 'PMS-3', version: 2 }) }),
    );
    expect(archived.result).toMatchObject({ applied: true, result: { status: 'archived' } });
    const stale = await applied(
      await deliver({ endpoint: 'product', body: event('product.archived', { sku: 'PMS-1', version: 4 }) }),
    );
    expect(stale.result).toMatchObject({ applied: false, reason: 'stale_version' });
    expect((await ctx.api.db('products').where({ sku: 'PMS-1' }).first()).status).toBe('draft');
  });
});

describe('types', () => {
  it('maps inventory.counted, order.created and order.cancelled onto the domain functions', async () => {
    await applied(
      await deliver({
        endpoint: 'inventory',
        body: event('inventory.counted', { sku: 'PMS-1', location: 'default', onHand: 10 }),
      }),
    );
    expect(
      (await ctx.api.db('inventory_levels').where({ sku: 'PMS-1', location: 'default' }).first()).on_hand,
    ).toBe(10);
    const placed = await applied(
      await deliver({
        endpoint: 'order',
        body: event('order.created', {
          orderNumber: 'PMS-SO-1',
          currency: 'EUR',
          lines: [{ sku: 'PMS-1', quantity: 4, unitPrice: 1011 }],
        }),
      }),
    );
    expect(placed.result).toMatchObject({
      result: { order: { orderNumber: 'PMS-SO-1', status: 'reserved' } },
    });
    const hold = await ctx.api.db('reservations').where({ reference: 'PMS-SO-1' }).first();
    expect(hold.expires_at.getTime() - hold.created_at.getTime()).toBe(ctx.config.ORDER_HOLD_SECONDS * 1000);
    await applied(
      await deliver({ endpoint: 'order', body: event('order.cancelled', { orderNumber: 'PMS-SO-1' }) }),
    );
    expect((await ctx.api.db('orders').where({ order_number: 'PMS-SO-1' }).first()).status).toBe('cancelled');
    expect(
      (await ctx.api.db('inventory_levels').where({ sku: 'PMS-1', location: 'default' }).first()).reserved,
    ).toBe(0);
  });

  it('fails the job with the domain error when the effect is refused, leaving no dedupe record', async () => {
    const res = await deliver({
      endpoint: 'order',
      body: event('order.created', {
        orderNumber: 'PMS-SO-2',
        currency: 'EUR',
        lines: [{ sku: 'PMS-1', quantity: 99, unitPrice: 1 }],
      }),
    });
    const status = await ctx.waitForJob(res.json().id);
    expect(status).toMatchObject({ state: 'failed', error: { code: 'insufficient_stock' } });
    expect(await ctx.api.db('inbound_deliveries').where({ webhook_id: res.id }).first()).toBeUndefined();
  });

  it('refuses an unknown type, a type of another endpoint, and data failing its schema: 422, nothing enqueued', async () => {
    const before = await ctx.api.queues.inbound.getJobCounts();
    const unknown = await deliver({ endpoint: 'product', body: event('product.exploded', { sku: 'X' }) });
    expect(unknown.status).toBe(422);
    expect(unknown.json()).toMatchObject({
      code: 'unknown_webhook_type',
      details: { type: 'product.exploded', accepted: ['product.upserted', 'product.archived'] },
    });
    const elsewhere = await deliver({
      endpoint: 'inventory',
      body: event('order.cancelled', { orderNumber: 'X' }),
    });
    expect(elsewhere.status).toBe(422);
    expect(elsewhere.json().code).toBe('unknown_webhook_type');
    const bad = await deliver({
      endpoint: 'product',
      body: event('product.upserted', {
        sku: 'bad sku',
        price: { amount: -1, currency: 'EURO' },
        version: 0,
      }),
    });
    expect(bad.status).toBe(422);
    expect(bad.json().code).toBe('invalid_webhook_payload');
    expect(
      bad
        .json()
        .errors.map((e: { path: string }) => e.path)
        .sort(),
    ).toEqual(['data.name', 'data.price.amount', 'data.price.currency', 'data.sku', 'data.version']);
    const envelope = await deliver({
      endpoint: 'order',
      body: JSON.stringify({ type: 'order.cancelled', data: [] }),
    });
    expect(envelope.status).toBe(422);
    expect(
      envelope
        .json()
        .errors.map((e: { path: string }) => e.path)
        .sort(),
    ).toEqual(['data', 'timestamp']);
    const malformed = await deliver({ endpoint: 'order', body: '{"type":' });
    expect(malformed.status).toBe(400);
    expect(malformed.json().code).toBe('malformed_json');
    expect(await ctx.api.queues.inbound.getJobCounts()).toEqual(before);
  });

  it('is documented as signed, without an API key', async () => {
    const docs = json(await ctx.request({ method: 'GET', url: '/docs/json' }));
    for (const endpoint of ['product', 'inventory', 'order']) {
      const operation = docs.paths[`/api/pms/webhook/${endpoint}`].post;
      expect(operation.security).toEqual([]);
      expect(operation.parameters.map((p: { name: string }) => p.name)).toEqual(
        expect.arrayContaining(['webhook-id', 'webhook-timestamp', 'webhook-signature']),
      );
      expect(operation.requestBody.content['application/json'].schema.example).toBeDefined();
    }
  });
});
