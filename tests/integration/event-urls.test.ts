import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { EventSource } from 'eventsource';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { alertSettingsOf, evaluateAlerts } from '../../src/ops/alerts.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { noiseJpeg } from '../helpers/images.js';
import { until } from '../helpers/until.js';

/**
 * Security report, finding 1: `alert.opened` carried a webhook endpoint's full URL (its query
 * token included) into the feed every pms key and `*` subscriber reads. Every URL an event names
 * (endpoints, alerts, suppliers, image sources and download errors) now reaches the feed, the
 * stream and the alert list without userinfo, query or fragment. Read over real sockets.
 */

let ctx: TestContext;
let base: string;
let server: http.Server;
let origin: string;
let mediaDir: string;

beforeAll(async () => {
  const photo = await noiseJpeg(64, 48, 3);
  server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/photo.jpg') res.writeHead(200, { 'content-type': 'image/jpeg' }).end(photo);
    else res.writeHead(404).end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  mediaDir = await mkdtemp(path.join(os.tmpdir(), 'stockflow-media-'));
  ctx = await createTestContext({
    workers: ['images', 'products'],
    env: {
      MEDIA_DIR: mediaDir,
      IMAGE_ALLOW_PRIVATE_SOURCES: 'true',
      EVENT_STREAM_POLL_MS: '100',
      ALERT_EVALUATION_INTERVAL: '1h',
    },
  });
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(ctx.app.server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await ctx?.close();
  server.closeAllConnections();
  server.close();
  await rm(mediaDir, { recursive: true, force: true });
});

const get = async (url: string, key: string) => {
  const response = await fetch(`${base}${url}`, { headers: { authorization: `Bearer ${key}` } });
  return { status: response.status, body: await response.text() };
};

it('keeps URL credentials out of every event, in the feed and the stream, and out of the alert list', async () => {
  // Everything the pms key sees over SSE from the start of the log, through the `eventsource` client.
  const streamed: string[] = [];
  const source = new EventSource(`${base}/api/pms/events/stream?after=0`, {
    fetch: (input, init) =>
      fetch(input, { ...init, headers: { ...init.headers, authorization: `Bearer ${ctx.pmsKey}` } }),
  });
  source.onmessage = (message) => streamed.push(message.data);
  try {
    // An endpoint whose receiver takes its credential in the query string, then disabled.
    const created = await ctx.request({
      method: 'POST',
      url: '/api/webhooks/endpoints',
      key: ctx.adminKey,
      payload: { url: 'https://hooks.example.com/in?token=SECRET-ENDPOINT#x', eventTypes: ['product.*'] },
    });
    expect(created.statusCode).toBe(201);
    const endpoint = json(created);
    // The admin API still shows the full URL: it is the admin's own setting.
    expect(endpoint.url).toContain('SECRET-ENDPOINT');
    await ctx.api
      .db('webhook_endpoints')
      .where({ id: endpoint.id })
      .update({ status: 'disabled', disabled_reason: 'test' });
    const evaluation = await evaluateAlerts(ctx.api.db, {
      now: new Date(),
      redisFiring: [],
      settings: alertSettingsOf(ctx.config),
    });
    expect(evaluation.opened.map((a) => a.rule)).toContain('webhook_endpoint_disabled');

    // A supplier whose API takes its key in the query string.
    const supplier = await ctx.request({
      method: 'POST',
      url: '/api/pms/suppliers',
      key: ctx.adminKey,
      payload: {
        code: 'leaky',
        name: 'Leaky',
        apiUrl: 'https://api.supplier.example/orders?key=SECRET-SUPPLIER',
        apiKey: 'supplier-key-1',
        leadTimeDays: 3,
      },
    });
    expect(supplier.statusCode, supplier.body).toBe(201);

    // Images from presigned-looking source URLs: one processed, one that fails (404).
    await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: { prefer: 'wait=10' },
      payload: { sku: 'EU-1', name: 'Vase', price: { amount: 100, currency: 'EUR' } },
    });
    for (const [file, state] of [
      ['photo.jpg', 'completed'],
      ['missing.jpg', 'failed'],
    ] as const) {
      const res = await ctx.request({
        method: 'POST',
        url: '/api/pms/products/EU-1/images',
        payload: { sourceUrl: `${origin}/${file}?X-Amz-Signature=SECRET-IMAGE` },
      });
      expect(res.statusCode).toBe(202);
      expect((await ctx.waitForJob(json(res).id, 20_000)).state).toBe(state);
    }

    // The feed, as the pms key reads it.
    const feed = await get('/api/pms/events?after=0&limit=1000', ctx.pmsKey);
    expect(feed.status).toBe(200);
    const items = JSON.parse(feed.body).items as { type: string; data: Record<string, unknown> }[];
    // biome-ignore lint/suspicious/noExplicitAny: reading into event data of several shapes
    const byType = (type: string) => items.find((e) => e.type === type)?.data as any;
    expect(byType('alert.opened').alert.details.url).toBe('https://hooks.example.com/in');
    expect(byType('webhook.endpoint_created').endpoint.url).toBe('https://hooks.example.com/in');
    expect(byType('supplier.created').supplier.apiUrl).toBe('https://api.supplier.example/orders');
    expect(byType('image.processed').image.current.source).toBe(`${origin}/photo.jpg`);
    expect(byType('image.failed').source).toBe(`${origin}/missing.jpg`);
    expect(byType('image.failed').error.details.url).toBe(`${origin}/missing.jpg`);
    expect(feed.body).not.toContain('SECRET');

    // The stream carries the same events, redacted alike.
    await until(
      'the stream to catch up',
      () => streamed.some((d) => d.includes('"image.failed"')),
      (caught) => caught,
    );
    expect(streamed.some((d) => d.includes('"alert.opened"'))).toBe(true);
    expect(streamed.join('\n')).not.toContain('SECRET');

    // And the alert list (readable by monitor keys) names the endpoint by id, its URL redacted.
    const alerts = await get('/api/ops/alerts', ctx.adminKey);
    expect(alerts.status).toBe(200);
    expect(alerts.body).toContain(endpoint.id);
    expect(alerts.body).not.toContain('SECRET');

    // Nothing stored in the log carries one either.
    const rows = await ctx.api.db('events').select('data');
    expect(JSON.stringify(rows)).not.toContain('SECRET');
  } finally {
    source.close();
  }
});
