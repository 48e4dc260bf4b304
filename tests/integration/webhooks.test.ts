import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { claimSend } from '../../src/webhooks/rate-limit.js';
import { generateSecret } from '../../src/webhooks/signing.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { type Receiver, type Responder, startReceiver } from '../helpers/webhook-receiver.js';

let ctx: TestContext;
const receivers: Receiver[] = [];
// Compressed retry schedule: 4 attempts, 100/200/300 ms apart (± 20 %).
const schedule = [100, 200, 300];

beforeAll(async () => {
  ctx = await createTestContext({
    workers: true,
    env: {
      WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
      WEBHOOK_RETRY_SCHEDULE: schedule.map((ms) => `${ms}ms`).join(','),
      WEBHOOK_RELAY_INTERVAL_MS: '100',
      WEBHOOK_BREAKER_FAILED_DELIVERIES: '2',
    },
  });
});
afterEach(async () => {
  await Promise.all(receivers.splice(0).map((r) => r.close()));
});
afterAll(() => ctx.close());

const wait = { prefer: 'wait=10' };
const admin = (options: Parameters<TestContext['request']>[0]) =>
  ctx.request({ ...options, key: ctx.adminKey });

async function receiverWithEndpoint(
  eventTypes: string[],
  respond?: Responder,
  extra: Record<string, unknown> = {},
) {
  const receiver = await startReceiver({ respond });
  receivers.push(receiver);
  const res = await admin({
    method: 'POST',
    url: '/api/webhooks/endpoints',
    payload: { url: receiver.url, eventTypes, ...extra },
  });
  expect(res.statusCode, res.body).toBe(201);
  const endpoint = json(res);
  receiver.secrets.push(endpoint.secret);
  return { receiver, endpoint };
}

let skuCounter = 0;
async function createProduct(): Promise<string> {
  const sku = `W-${++skuCounter}`;
  const res = await ctx.request({
    method: 'POST',
    url: '/api/pms/products',
    headers: wait,
    payload: { sku, name: `Webhook ${sku}`, price: { amount: 500, currency: 'EUR' } },
  });
  expect(res.statusCode, res.body).toBe(201);
  return sku;
}

async function eventOf(sku: string, type = 'product.created') {
  return ctx.api.db('events').where({ aggregate_id: sku, type }).first();
}

async function deliveryOf(endpointId: string, eventId: string) {
  return ctx.api.db('webhook_deliveries').where({ endpoint_id: endpointId, event_id: eventId }).first();
}

async function waitUntil<T>(
  read: () => Promise<T>,
  ok: (value: T) => boolean,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > deadline)
      throw new Error(`condition not met within ${timeoutMs} ms: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('webhook endpoints and deliveries', () => {
  it('shows the secret once and delivers signed events a standardwebhooks receiver verifies', async () => {
    const { receiver, endpoint } = await receiverWithEndpoint(['product.*'], undefined, {
      description: 'PMS',
    });
    expect(endpoint.secret).toMatch(/^whsec_/);
    expect(endpoint).toMatchObject({ status: 'enabled', eventTypes: ['product.*'], description: 'PMS' });
    const read = json(await admin({ method: 'GET', url: `/api/webhooks/endpoints/${endpoint.id}` }));
    expect(read).not.toHaveProperty('secret');
    const forbidden = await ctx.request({ method: 'GET', url: `/api/webhooks/endpoints/${endpoint.id}` });
    expect(forbidden.statusCode).toBe(403);

    const sku = await createProduct();
    const event = await eventOf(sku);
    await receiver.waitFor((r) => r.processed.has(event.id));
    const got = receiver.processed.get(event.id)!;
    expect(got.verifiedWith).toEqual([0]);
    expect(got.body).toMatchObject({ id: event.id, type: 'product.created', data: { product: { sku } } });
    expect(Date.parse(got.body.timestamp)).toBe(event.occurred_at.getTime());

    const delivery = await waitUntil(
      () => deliveryOf(endpoint.id, event.id),
      (d) => d?.status === 'delivered',
    );
    const detail = json(await admin({ method: 'GET', url: `/api/webhooks/deliveries/${delivery.id}` }));
    expect(detail).toMatchObject({ status: 'delivered', attempts: 1, eventSeq: event.seq });
    expect(detail.attemptLog).toEqual([
      expect.objectContaining({
        attempt: 1,
        statusCode: 200,
        outcome: 'delivered',
        responseBody: 'ok',
        error: null,
      }),
    ]);
    const list = json(
      await admin({
        method: 'GET',
        url: `/api/webhooks/endpoints/${endpoint.id}/deliveries?status=delivered`,
      }),
    );
    expect(list.items.map((d: { id: string }) => d.id)).toEqual([delivery.id]);

    // Its own webhook.* events are not sent to it, but they are in the log.
    const own = await ctx.api.db('events').where({ aggregate_id: endpoint.id });
    expect(own.map((e) => e.type)).toEqual(['webhook.endpoint_created']);
  });

  it('retries on the compressed schedule: fails 3 times, then succeeds on the 4th attempt', async () => {
    const { receiver, endpoint } = await receiverWithEndpoint(['product.created'], (_, nth) => ({
      status: nth < 3 ? 500 : 200,
      body: nth < 3 ? 'not now' : 'ok',
    }));
    const event = await eventOf(await createProduct());
    await receiver.waitFor((r) => r.processed.has(event.id));
    const attempts = receiver.requests.filter((r) => r.webhookId === event.id);
    expect(attempts.map((a) => a.status)).toEqual([500, 500, 500, 200]);
    expect(attempts.every((a) => a.verifiedWith.length === 1)).toBe(true);
    for (const [i, delay] of schedule.entries()) {
      const gap = attempts[i + 1]!.at - attempts[i]!.at;
      expect(gap).toBeGreaterThanOrEqual(delay * 0.8 - 15);
      expect(gap).toBeLessThan(delay * 1.2 + 1000);
    }
    const delivery = await waitUntil(
      () => deliveryOf(endpoint.id, event.id),
      (d) => d?.status === 'delivered',
    );
    expect(delivery.attempts).toBe(4);
    const log = json(
      await admin({ method: 'GET', url: `/api/webhooks/deliveries/${delivery.id}` }),
    ).attemptLog;
    expect(log.map((a: { statusCode: number; outcome: string }) => `${a.statusCode}:${a.outcome}`)).toEqual([
      '500:failed',
      '500:failed',
      '500:failed',
      '200:delivered',
    ]);
    expect(log[0].responseBody).toBe('not now');
  });

  it('honours Retry-After on 429 and 503 instead of the schedule', async () => {
    const answers = [
      { status: 429, headers: { 'retry-after': '1' } },
      { status: 503, headers: { 'retry-after': '1' } },
      { status: 200 },
    ];
    const { receiver } = await receiverWithEndpoint(
      ['product.created'],
      (_, nth) => answers[nth] ?? { status: 200 },
    );
    const event = await eventOf(await createProduct());
    await receiver.waitFor((r) => r.processed.has(event.id));
    const at = receiver.requests.map((r) => r.at);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(990);
    expect(at[2]! - at[1]!).toBeGreaterThanOrEqual(990);
  });

  it('disables the endpoint at once on 410 Gone and holds what follows', async () => {
    const { receiver, endpoint } = await receiverWithEndpoint(['product.created'], () => ({ status: 410 }));
    const event = await eventOf(await createProduct());
    const disabled = await waitUntil(
      async () => json(await admin({ method: 'GET', url: `/api/webhooks/endpoints/${endpoint.id}` })),
      (e) => e.status === 'disabled',
    );
    expect(disabled.disabledReason).toBe('gone');
    expect(receiver.requests).toHaveLength(1);
    expect((await deliveryOf(endpoint.id, event.id)).status).toBe('held');
    const next = await eventOf(await createProduct());
    await waitUntil(
      () => deliveryOf(endpoint.id, next.id),
      (d) => d?.status === 'held',
    );
    expect(receiver.requests).toHaveLength(1);
    const disabledEvent = await ctx.api
      .db('events')
      .where({ type: 'webhook.endpoint_disabled', aggregate_id: endpoint.id })
      .first();
    expect(disabledEvent.data).toMatchObject({
      reason: 'gone',
      statusCode: 410,
      endpoint: { id: endpoint.id },
    });
  });

  it('exhausts a delivery after the last attempt, writes webhook.delivery_exhausted, and retries it by hand', async () => {
    let healthy = false;
    const { receiver, endpoint } = await receiverWithEndpoint(['product.created'], () => ({
      status: healthy ? 200 : 500,
    }));
    const event = await eventOf(await createProduct());
    const failed = await waitUntil(
      () => deliveryOf(endpoint.id, event.id),
      (d) => d?.status === 'failed',
    );
    expect(failed.attempts).toBe(schedule.length + 1);
    expect(receiver.requests.filter((r) => r.webhookId === event.id)).toHaveLength(schedule.length + 1);
    const exhausted = await ctx.api
      .db('events')
      .where({ type: 'webhook.delivery_exhausted', aggregate_id: endpoint.id })
      .first();
    expect(exhausted.data).toMatchObject({
      deliveryId: failed.id,
      eventId: event.id,
      eventType: 'product.created',
      attempts: 4,
      lastStatusCode: 500,
    });
    const endpointNow = json(await admin({ method: 'GET', url: `/api/webhooks/endpoints/${endpoint.id}` }));
    expect(endpointNow).toMatchObject({ status: 'enabled', consecutiveFailures: 1 });

    healthy = true;
    const retry = await admin({ method: 'POST', url: `/api/webhooks/deliveries/${failed.id}/retry` });
    expect(retry.statusCode).toBe(202);
    expect(retry.headers.location).toBe(`/api/jobs/${json(retry).id}`);
    const job = await ctx.waitForJob(json(retry).id);
    expect(job).toMatchObject({ state: 'completed', result: { outcome: 'delivered', attempt: 5 } });
    expect(receiver.processed.get(event.id)?.verifiedWith).toEqual([0]);
    expect((await deliveryOf(endpoint.id, event.id)).status).toBe('delivered');
  });

  it('replays a time range, including events from before the endpoint existed', async () => {
    const since = new Date(Date.now() - 1000).toISOString();
    const early = await eventOf(await createProduct());
    const { receiver, endpoint } = await receiverWithEndpoint(['product.created']);
    const late = await eventOf(await createProduct());
    await receiver.waitFor((r) => r.processed.has(late.id));
    expect(receiver.processed.has(early.id)).toBe(false);

    const res = await admin({
      method: 'POST',
      url: `/api/webhooks/endpoints/${endpoint.id}/replay`,
      headers: wait,
      payload: { since },
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(json(res).events).toBeGreaterThanOrEqual(2);
    await receiver.waitFor(
      (r) => r.processed.has(early.id) && r.requests.filter((q) => q.webhookId === late.id).length === 2,
    );

    const bad = await admin({
      method: 'POST',
      url: `/api/webhooks/endpoints/${endpoint.id}/replay`,
      payload: { since, until: '2000-01-01T00:00:00Z' },
    });
    expect(bad.statusCode).toBe(400);
  });

  it('signs with both secrets for 24 h after a rotation', async () => {
    const { receiver, endpoint } = await receiverWithEndpoint(['product.created']);
    const rotated = await admin({
      method: 'POST',
      url: `/api/webhooks/endpoints/${endpoint.id}/rotate-secret`,
    });
    expect(rotated.statusCode).toBe(200);
    const { secret, previousSecretExpiresAt } = json(rotated);
    expect(secret).not.toBe(endpoint.secret);
    expect(Date.parse(previousSecretExpiresAt) - Date.now()).toBeGreaterThan(23.9 * 3_600_000);
    receiver.secrets.push(secret);

    const event = await eventOf(await createProduct());
    await receiver.waitFor((r) => r.processed.has(event.id));
    const got = receiver.processed.get(event.id)!;
    expect(got.signature.split(' ')).toHaveLength(2);
    // A receiver holding only the old secret, and one holding only the new, both verify.
    expect(got.verifiedWith).toEqual([0, 1]);
  });

  it('opens the circuit after consecutive failed deliveries or a long failing span, and resumes held deliveries on enable', async () => {
    let healthy = false;
    const { receiver, endpoint } = await receiverWithEndpoint(['product.created'], () => ({
      status: healthy ? 200 : 500,
    }));
    const first = await eventOf(await createProduct());
    const second = await eventOf(await createProduct());
    const disabled = await waitUntil(
      async () => json(await admin({ method: 'GET', url: `/api/webhooks/endpoints/${endpoint.id}` })),
      (e) => e.status === 'disabled',
    );
    expect(disabled).toMatchObject({ disabledReason: 'consecutive_failures', consecutiveFailures: 2 });
    const held = await eventOf(await createProduct());
    await waitUntil(
      () => deliveryOf(endpoint.id, held.id),
      (d) => d?.status === 'held',
    );
    const requestsWhileOff = receiver.requests.length;

    healthy = true;
    const enabled = await admin({ method: 'POST', url: `/api/webhooks/endpoints/${endpoint.id}/enable` });
    expect(json(enabled)).toMatchObject({ status: 'enabled', consecutiveFailures: 0, disabledReason: null });
    await receiver.waitFor((r) => r.processed.has(held.id));
    // The receiver has answered, but the worker records the success (which clears failing_since)
    // a moment later: wait for it, or the span set below could be wiped by that write.
    await waitUntil(
      () => deliveryOf(endpoint.id, held.id),
      (d) => d?.status === 'delivered',
    );
    expect(receiver.requests.length).toBe(requestsWhileOff + 1);
    expect((await deliveryOf(endpoint.id, first.id)).status).toBe('failed');
    expect((await deliveryOf(endpoint.id, second.id)).status).toBe('failed');
    const enabledEvent = await ctx.api
      .db('events')
      .where({ type: 'webhook.endpoint_enabled', aggregate_id: endpoint.id })
      .first();
    expect(enabledEvent.data).toMatchObject({ heldDeliveries: 1 });

    // Every attempt failing for longer than WEBHOOK_BREAKER_SPAN (5 days) also opens it.
    healthy = false;
    await ctx.api
      .db('webhook_endpoints')
      .where({ id: endpoint.id })
      .update({ failing_since: ctx.api.db.raw(`now() - interval '6 days'`) });
    await createProduct();
    const spanned = await waitUntil(
      async () => json(await admin({ method: 'GET', url: `/api/webhooks/endpoints/${endpoint.id}` })),
      (e) => e.status === 'disabled',
    );
    expect(spanned.disabledReason).toBe('failing_span');
  });

  it('updates and deletes endpoints', async () => {
    const { endpoint } = await receiverWithEndpoint(['product.created']);
    const put = await admin({
      method: 'PUT',
      url: `/api/webhooks/endpoints/${endpoint.id}`,
      payload: { url: endpoint.url, eventTypes: ['product.*', 'stock.*'], rateLimitPerSecond: 5 },
    });
    expect(put.statusCode).toBe(200);
    expect(json(put)).toMatchObject({
      eventTypes: ['product.*', 'stock.*'],
      rateLimitPerSecond: 5,
      version: 2,
    });
    const badType = await admin({
      method: 'PUT',
      url: `/api/webhooks/endpoints/${endpoint.id}`,
      payload: { url: endpoint.url, eventTypes: ['product.*x'] },
    });
    expect(badType.statusCode).toBe(400);
    // Well-formed but matching nothing (there are no shipment events): refused with suggestions.
    const unknownType = await admin({
      method: 'PUT',
      url: `/api/webhooks/endpoints/${endpoint.id}`,
      payload: { url: endpoint.url, eventTypes: ['product.*', 'shipment.*'] },
    });
    expect(unknownType.statusCode).toBe(422);
    expect(json(unknownType)).toMatchObject({
      code: 'unknown_event_type',
      errors: [{ in: 'body', path: 'eventTypes.1' }],
    });
    const created = await admin({
      method: 'POST',
      url: '/api/webhooks/endpoints',
      payload: { url: endpoint.url, eventTypes: ['stock.moevd'] },
    });
    expect(created.statusCode).toBe(422);
    expect(json(created).suggestions[0]).toBe('stock.moved');
    expect(await ctx.api.db('webhook_endpoints').where({ id: endpoint.id }).first('event_types')).toEqual({
      event_types: ['product.*', 'stock.*'],
    });
    expect(
      (await admin({ method: 'DELETE', url: `/api/webhooks/endpoints/${endpoint.id}` })).statusCode,
    ).toBe(204);
    expect((await admin({ method: 'GET', url: `/api/webhooks/endpoints/${endpoint.id}` })).statusCode).toBe(
      404,
    );
    const types = (await ctx.api.db('events').where({ aggregate_id: endpoint.id }).orderBy('seq')).map(
      (e) => e.type,
    );
    expect(types).toEqual([
      'webhook.endpoint_created',
      'webhook.endpoint_updated',
      'webhook.endpoint_deleted',
    ]);
  });
});

describe('rate limit', () => {
  it('lets at most rateLimitPerSecond sends into any second, and says when the next may go', async () => {
    const claim = async (n: number) =>
      (await claimSend(ctx.api.redis, ctx.config.QUEUE_PREFIX, 'ep-window', 3, `send-${n}`)).waitMs;
    const waits = await Promise.all([0, 1, 2, 3, 4].map(claim));
    expect(waits.filter((ms) => ms === 0)).toHaveLength(3);
    const held = waits.filter((ms) => ms > 0);
    expect(held).toHaveLength(2);
    for (const ms of held) expect(ms).toBeLessThanOrEqual(1000);
    await new Promise((r) => setTimeout(r, Math.max(...held) + 5));
    expect(await claim(5)).toBe(0);
  });
});

describe('SSRF guard', () => {
  it('refuses loopback and private targets at registration and at connect time, before any connection', async () => {
    const guarded = await createTestContext({
      workers: true,
      env: { WEBHOOK_RELAY_INTERVAL_MS: '100', WEBHOOK_RETRY_SCHEDULE: '50ms' },
    });
    const receiver = await startReceiver();
    receivers.push(receiver);
    try {
      const port = new URL(receiver.url).port;
      for (const url of [
        receiver.url,
        `http://localhost:${port}/hooks`,
        'http://169.254.169.254/latest/meta-data',
        'http://[::1]/x',
        'http://10.1.2.3/x',
      ]) {
        const res = await guarded.request({
          method: 'POST',
          url: '/api/webhooks/endpoints',
          key: guarded.adminKey,
          payload: { url, eventTypes: ['*'] },
        });
        expect(res.statusCode, url).toBe(422);
        expect(json(res).code).toBe('unsafe_webhook_url');
      }
      // Not an http(s) URL at all: the URL field schema refuses it (src/schemas/fields.ts).
      const ftp = await guarded.request({
        method: 'POST',
        url: '/api/webhooks/endpoints',
        key: guarded.adminKey,
        payload: { url: 'ftp://example.com/x', eventTypes: ['*'] },
      });
      expect(ftp.statusCode).toBe(400);
      expect(json(ftp)).toMatchObject({ code: 'validation_failed', errors: [{ path: 'url' }] });
      // Endpoints registered while private targets were allowed, or whose name resolves to a
      // private address later: the worker refuses them when it connects.
      const endpointRow = (url: string, id = randomUUID()) => ({
        id,
        url,
        event_types: ['product.*'],
        secret: guarded.api.secrets.seal(generateSecret(), { column: 'webhook_endpoints.secret', row: id }),
      });
      const [literal] = await guarded.api
        .db('webhook_endpoints')
        .insert(endpointRow(receiver.url))
        .returning('id');
      const [named] = await guarded.api
        .db('webhook_endpoints')
        .insert(endpointRow(`http://localhost:${port}/hooks`))
        .returning('id');
      await guarded.request({
        method: 'POST',
        url: '/api/pms/products',
        headers: wait,
        payload: { sku: 'SSRF-1', name: 'x', price: { amount: 1, currency: 'EUR' } },
      });
      for (const { id } of [literal, named]) {
        const delivery = await waitUntil(
          () => guarded.api.db('webhook_deliveries').where({ endpoint_id: id }).first(),
          (d) => d?.status === 'failed',
        );
        const attempts = await guarded.api.db('webhook_attempts').where({ delivery_id: delivery.id });
        expect(attempts).toHaveLength(2);
        for (const attempt of attempts) {
          expect(attempt).toMatchObject({ outcome: 'refused', status_code: null });
          expect(attempt.error).toMatch(/refused .*127\.0\.0\.1|refused localhost/);
        }
      }
      expect(receiver.connections).toBe(0);
      expect(receiver.requests).toHaveLength(0);
    } finally {
      await guarded.close();
    }
  });
});
