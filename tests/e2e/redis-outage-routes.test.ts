import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freePort } from '../../scripts/bench/scratch.js';
import { followUpJobId } from '../../src/queues/follow-ups.js';
import { generateSecret } from '../../src/webhooks/signing.js';
import { createTestContext, exitOf, json, type TestContext } from '../helpers/context.js';
import { alphaPng, givenMainImage, imageUpload } from '../helpers/images.js';
import { startScratchRedis } from '../helpers/scratch-redis.js';

/**
 * Every route that queues a job answers a Redis outage with 503, Retry-After and a problem
 * document, over a real socket, and changes nothing. The routes come from the OpenAPI document
 * (every operation that answers 202 with a job handle, with its own example body), plus the ones
 * that queue without a 202: a supplier change (its rules' checks) and an image upload.
 */

type Json = Record<string, unknown>;
interface Call {
  label: string;
  family: string;
  method: string;
  path: string;
  key?: string | null;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

const inboundSecret = generateSecret();
const sku = 'OUT-1';
let redis: ChildProcess;
let port: number;
let ctx: TestContext;
let base: string;
// biome-ignore lint/suspicious/noExplicitAny: a JSON document walked by key
let document: Record<string, any>;
let endpointId: string;
let deliveryId: string;
let imageId: string;
let ruleId: number;

async function send(call: Call) {
  const started = Date.now();
  const key = call.key === undefined ? ctx.adminKey : call.key;
  const body = call.body;
  const response = await fetch(`${base}${call.path}`, {
    method: call.method,
    headers: {
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      ...(typeof body === 'string' ? { 'content-type': 'application/json' } : {}),
      ...call.headers,
    },
    body,
  });
  return { response, text: await response.text(), ms: Date.now() - started };
}

const jsonCall = (call: Omit<Call, 'body'> & { body?: unknown }): Call => ({
  ...call,
  body: call.body === undefined ? undefined : JSON.stringify(call.body),
});

/** Each operation that answers 202 (it queues a job), with its example body and known path params. */
function queueingOperations(): Call[] {
  const params: Record<string, (path: string) => string> = {
    sku: () => sku,
    imageId: () => imageId,
    id: (path) =>
      path.startsWith('/api/webhooks/deliveries/')
        ? deliveryId
        : path.startsWith('/api/webhooks/endpoints/')
          ? endpointId
          : randomUUID(),
    code: () => 'default',
    orderNumber: () => 'SO-OUT-1',
  };
  return Object.entries(document.paths as Record<string, Record<string, Json>>).flatMap(([template, item]) =>
    Object.entries(item)
      .filter(([, operation]) => (operation.responses as Json | undefined)?.['202'] !== undefined)
      .map(([method, operation]) => {
        const path = template.replace(/\{(\w+)\}/g, (_, name: string) => params[name]!(template));
        const media = (operation.requestBody as { content?: Record<string, Json> } | undefined)?.content?.[
          'application/json'
        ];
        const schema = media?.schema as Json | undefined;
        const named = Object.values((media?.examples ?? {}) as Record<string, { value: unknown }>)[0];
        const example = media?.example ?? named?.value ?? schema?.example;
        const call: Call = {
          label: `${method.toUpperCase()} ${template}`,
          family: (operation.tags as string[])[0]!,
          method: method.toUpperCase(),
          path,
          headers: { 'if-match': '"1"' },
          body: example === undefined ? undefined : JSON.stringify(example),
        };
        if (!template.startsWith('/api/pms/webhook/')) return call;
        // Inbound webhooks: signed, no API key.
        const id = `msg_${randomUUID()}`;
        const at = new Date();
        return {
          ...call,
          key: null,
          headers: {
            'webhook-id': id,
            'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
            'webhook-signature': new Webhook(inboundSecret).sign(id, at, call.body!),
          },
        };
      }),
  );
}

beforeAll(async () => {
  port = await freePort();
  redis = await startScratchRedis(port);
  ctx = await createTestContext({
    env: { REDIS_URL: `redis://127.0.0.1:${port}`, INBOUND_WEBHOOK_SECRET: inboundSecret },
  });
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(ctx.app.server.address() as AddressInfo).port}`;
  document = json(await ctx.request({ method: 'GET', url: '/docs/json' }));

  // What the routes look up before they queue: rows written directly, no worker needed.
  const db = ctx.api.db;
  await db('products').insert({ sku, name: 'Desk', price_amount: 100, price_currency: 'EUR' });
  imageId = await givenMainImage(db, sku);
  for (const code of ['acme', 'idle']) {
    const created = await send(
      jsonCall({
        label: 'supplier',
        family: 'reordering',
        method: 'POST',
        path: '/api/pms/suppliers',
        body: {
          code,
          name: code,
          apiUrl: 'https://supplier.example/po',
          apiKey: 'supplier-key-1',
          leadTimeDays: 5,
        },
      }),
    );
    expect(created.response.status, created.text).toBe(201);
  }
  [{ id: ruleId }] = await db('reorder_rules')
    .insert({
      sku,
      location: 'default',
      supplier_code: 'acme',
      point_mode: 'fixed',
      reorder_point: 5,
      window_days: 28,
      reorder_quantity: 10,
    })
    .returning('id');
  const endpoint = await send(
    jsonCall({
      label: 'endpoint',
      family: 'webhooks',
      method: 'POST',
      path: '/api/webhooks/endpoints',
      body: { url: 'https://hooks.example/stockflow', eventTypes: ['product.*'] },
    }),
  );
  expect(endpoint.response.status, endpoint.text).toBe(201);
  endpointId = JSON.parse(endpoint.text).id;
  const { rows } = await db.raw(
    `insert into webhook_deliveries (endpoint_id, event_id, event_seq, event_type)
     select ?, id, seq, type from events order by seq desc limit 1 returning id`,
    [endpointId],
  );
  deliveryId = rows[0].id;
});
afterAll(async () => {
  if (redis.exitCode !== null || redis.signalCode !== null) redis = await startScratchRedis(port);
  await ctx.close();
  redis.kill('SIGTERM');
  await exitOf(redis);
});

it('answers 503 with Retry-After on every route that queues a job while Redis is down, and changes nothing', async () => {
  const upload = imageUpload(await alphaPng(8, 8), { filename: 'a.png', contentType: 'image/png' });
  const calls: Call[] = [
    ...queueingOperations(),
    // A supplier change queues its rules' checks before it commits.
    jsonCall({
      label: 'PUT /api/pms/suppliers/{code} (with rules)',
      family: 'reordering',
      method: 'PUT',
      path: '/api/pms/suppliers/acme',
      key: ctx.pmsKey,
      body: { name: 'ACME', leadTimeDays: 2, expectedVersion: 1 },
    }),
    {
      label: 'POST /api/pms/products/{sku}/images (upload)',
      family: 'images',
      method: 'POST',
      path: `/api/pms/products/${sku}/images`,
      headers: upload.headers,
      body: upload.payload,
    },
  ];
  const families = new Set(calls.map((c) => c.family));
  for (const family of [
    'products',
    'inventory',
    'locations',
    'orders',
    'reordering',
    'images',
    'webhooks',
    'inbound webhooks',
  ])
    expect(families, family).toContain(family);
  expect(calls.length).toBeGreaterThanOrEqual(34);

  redis.kill('SIGKILL');
  await exitOf(redis);

  const wrong: string[] = [];
  for (const call of calls) {
    const { response, text, ms } = await send(call);
    const problem = JSON.parse(text) as Json;
    const as = `${call.label}: ${response.status} ${text.slice(0, 300)}`;
    if (
      response.status !== 503 ||
      response.headers.get('content-type') !== 'application/problem+json; charset=utf-8' ||
      response.headers.get('retry-after') !== '5' ||
      problem.code !== 'service_unavailable' ||
      /ECONNREFUSED|writeable|enableOfflineQueue|ioredis/i.test(text) ||
      ms > 3000 // fails fast, never hangs
    )
      wrong.push(`${as} (retry-after ${response.headers.get('retry-after')}, ${ms} ms)`);
  }
  expect(wrong).toEqual([]);

  // Nothing changed: the delivery was not reset, the supplier not saved, no upload left staged.
  expect(await ctx.api.db('webhook_deliveries').where({ id: deliveryId }).first()).toMatchObject({
    enqueue_count: 0,
    job_id: null,
    status: 'pending',
  });
  expect(await ctx.api.db('suppliers').where({ code: 'acme' }).first()).toMatchObject({
    version: 1,
    lead_time_days: 5,
  });
  expect(await ctx.api.db('image_uploads').count({ n: '*' }).first()).toEqual({ n: 0 });
  expect(await ctx.api.db('image_upload_chunks').count({ n: '*' }).first()).toEqual({ n: 0 });

  // What queues nothing is not refused: reads, a supplier without rules, a consumer's position.
  for (const [call, status] of [
    [{ label: 'GET product', family: 'products', method: 'GET', path: `/api/pms/products/${sku}` }, 200],
    [
      jsonCall({
        label: 'PUT supplier without rules',
        family: 'reordering',
        method: 'PUT',
        path: '/api/pms/suppliers/idle',
        body: { name: 'Idle', leadTimeDays: 3 },
      }),
      200,
    ],
    [
      jsonCall({
        label: 'ack',
        family: 'sync',
        method: 'POST',
        path: '/api/pms/sync/ack',
        body: { consumer: 'outage', seq: 0 },
      }),
      200,
    ],
  ] as const) {
    const { response, text } = await send(call);
    expect(response.status, `${call.label}: ${text}`).toBe(status);
  }

  // Back up: the same requests go through, and the supplier change queues its rule's check.
  redis = await startScratchRedis(port);
  const supplierChange = calls.find((c) => c.path === '/api/pms/suppliers/acme')!;
  let changed = await send(supplierChange);
  for (let i = 0; i < 100 && changed.response.status === 503; i++) {
    await new Promise((r) => setTimeout(r, 100));
    changed = await send(supplierChange);
  }
  expect(changed.response.status, changed.text).toBe(200);
  expect(JSON.parse(changed.text)).toMatchObject({ version: 2, leadTimeDays: 2 });
  const check = followUpJobId({ kind: 'check', payload: { ruleId }, key: 'supplier-acme-v2' });
  expect(await ctx.api.queues.reorder.getJob(check)).toBeDefined();

  const retry = await send(calls.find((c) => c.path === `/api/webhooks/deliveries/${deliveryId}/retry`)!);
  expect(retry.response.status, retry.text).toBe(202);
  expect(await ctx.api.db('webhook_deliveries').where({ id: deliveryId }).first()).toMatchObject({
    enqueue_count: 1,
    job_id: JSON.parse(retry.text).id,
  });
});
