import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { productJobs } from '../../src/queues/products.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { givenMainImage } from '../helpers/images.js';
import { openSse, type SseClient } from '../helpers/sse.js';

let ctx: TestContext;
let base: string;
beforeAll(async () => {
  ctx = await createTestContext({
    workers: ['products'],
    env: { EVENT_STREAM_HEARTBEAT_MS: '200', EVENT_STREAM_POLL_MS: '200' },
  });
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(ctx.app.server.address() as AddressInfo).port}`;
});
afterAll(() => ctx.close());

const auth = () => ({ authorization: `Bearer ${ctx.pmsKey}` });
const product = (sku: string) => ({ sku, name: `Stream ${sku}`, price: { amount: 100, currency: 'EUR' } });

/** Adds product.create jobs straight to the queue (no HTTP): each writes one product.created event. */
async function createProducts(prefix: string, count: number): Promise<void> {
  for (let i = 0; i < count; i += 500) {
    const batch = Array.from({ length: Math.min(500, count - i) }, (_, j) => ({
      name: productJobs.create.name,
      data: { payload: { ...product(`${prefix}-${i + j}`), status: 'draft' }, meta: { actor: 'test' } },
    }));
    await ctx.api.queues.products.addBulk(batch);
  }
}

interface WsMessage {
  event?: { seq: number; type: string; aggregate: { id: string } };
  subscribed?: { after: number | null; types: string[] | null; consumer: string | null };
  acked?: { consumer: string; ackedSeq: number };
  error?: { code: string; message: string };
}

const seqs = (client: SseClient) => client.events.map((e) => Number(e.id));
const skus = (client: SseClient) => client.events.map((e) => JSON.parse(e.data).aggregate.id as string);

async function head(): Promise<number> {
  return json(await ctx.request({ method: 'GET', url: '/api/pms/events?limit=1' })).headSeq;
}

describe('SSE stream', () => {
  it('streams new events with id: <seq>, heartbeats, type filters, and resumes with Last-Event-ID or ?after=', async () => {
    const all = openSse(`${base}/api/pms/events/stream`, auth());
    const published = openSse(`${base}/api/pms/events/stream?types=product.published`, auth());
    expect(await all.status).toBe(200);
    await all.waitFor((c) => c.comments.includes('heartbeat'));

    for (const sku of ['S-1', 'S-2', 'S-3']) {
      await ctx.request({
        method: 'POST',
        url: '/api/pms/products',
        headers: { prefer: 'wait=10' },
        payload: product(sku),
      });
    }
    await givenMainImage(ctx.api.db, 'S-2'); // publishing needs a processed main image
    await ctx.request({
      method: 'POST',
      url: '/api/pms/products/S-2/publish',
      headers: { prefer: 'wait=10' },
    });
    await all.waitFor((c) => c.events.length === 4);
    expect(skus(all)).toEqual(['S-1', 'S-2', 'S-3', 'S-2']);
    expect(JSON.parse(all.events[3]!.data)).toMatchObject({
      type: 'product.published',
      aggregate: { type: 'product' },
    });
    await published.waitFor((c) => c.events.length === 1);
    expect(JSON.parse(published.events[0]!.data).type).toBe('product.published');
    all.close();
    published.close();

    const [first, second] = seqs(all);
    const resumed = openSse(`${base}/api/pms/events/stream?after=0`, {
      ...auth(),
      'last-event-id': String(second),
    });
    await resumed.waitFor((c) => c.events.length === 2);
    expect(skus(resumed)).toEqual(['S-3', 'S-2']);
    resumed.close();
    const fromQuery = openSse(`${base}/api/pms/events/stream?after=${first}`, auth());
    await fromQuery.waitFor((c) => c.events.length === 3);
    fromQuery.close();

    const bad = openSse(`${base}/api/pms/events/stream`, { ...auth(), 'last-event-id': 'abc' });
    expect(await bad.status).toBe(400);
    const anonymous = openSse(`${base}/api/pms/events/stream`);
    expect(await anonymous.status).toBe(401);
  });

  it('ends open SSE and WebSocket streams when the app closes, without hanging', async () => {
    const other = await createTestContext({ env: { EVENT_STREAM_HEARTBEAT_MS: '60000' } });
    await other.app.listen({ host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${(other.app.server.address() as AddressInfo).port}`;
    const sse = openSse(`${url}/api/pms/events/stream`, { authorization: `Bearer ${other.pmsKey}` });
    expect(await sse.status).toBe(200);
    const ws = new WebSocket(`${url.replace('http', 'ws')}/api/pms/events/ws`, {
      headers: { authorization: `Bearer ${other.pmsKey}` },
    });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const wsClosed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    const started = Date.now();
    await other.app.close();
    expect(Date.now() - started).toBeLessThan(3000);
    await sse.ended;
    expect(await wsClosed).toBe(1001);
    await other.close();
  });
});

describe('WebSocket stream and sync status', () => {
  it('subscribes after a seq with a filter, acks, and the sync status shows the lag', async () => {
    const start = await head();
    const ws = new WebSocket(`${base.replace('http', 'ws')}/api/pms/events/ws`, { headers: auth() });
    const messages: WsMessage[] = [];
    ws.on('message', (raw) => messages.push(JSON.parse(raw.toString())));
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const until = async (predicate: () => boolean) => {
      const deadline = Date.now() + 15_000;
      while (!predicate()) {
        if (Date.now() > deadline)
          throw new Error(`timed out; messages: ${JSON.stringify(messages).slice(0, 2000)}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };

    ws.send('not json');
    await until(() => messages.some((m) => m.error?.code === 'malformed_json'));
    ws.send(JSON.stringify({ ack: 1 }));
    await until(() => messages.some((m) => m.error?.code === 'validation_failed'));

    ws.send(JSON.stringify({ subscribe: { after: start, types: ['product.*'], consumer: 'pms-ws' } }));
    await until(() => messages.some((m) => m.subscribed));
    await createProducts('WS', 5);
    await until(() => messages.filter((m) => m.event).length === 5);
    const events = messages.flatMap((m) => (m.event ? [m.event] : []));
    expect(events.every((e) => e.type === 'product.created')).toBe(true);
    expect(events.map((e) => e.seq)).toEqual([...events.map((e) => e.seq)].sort((a, b) => a - b));

    ws.send(JSON.stringify({ ack: events[1]!.seq }));
    await until(() => messages.some((m) => m.acked));
    const lagging = json(await ctx.request({ method: 'GET', url: '/api/pms/sync/status' }));
    const mine = lagging.consumers.find((c: { consumer: string }) => c.consumer === 'pms-ws');
    expect(mine).toMatchObject({ ackedSeq: events[1]!.seq, headSeq: lagging.headSeq, lag: 3 });
    expect(mine.lastAckAt).toEqual(expect.any(String));

    ws.send(JSON.stringify({ ack: events[4]!.seq }));
    await until(() => messages.filter((m) => m.acked).length === 2);
    const caughtUp = json(await ctx.request({ method: 'GET', url: '/api/pms/sync/status' }));
    expect(caughtUp.consumers.find((c: { consumer: string }) => c.consumer === 'pms-ws')).toMatchObject({
      lag: 0,
    });

    // A new connection for the same consumer resumes from its acked position.
    const again = new WebSocket(`${base.replace('http', 'ws')}/api/pms/events/ws`, { headers: auth() });
    const resumed: WsMessage[] = [];
    again.on('message', (raw) => resumed.push(JSON.parse(raw.toString())));
    await new Promise((resolve) => again.once('open', resolve));
    again.send(JSON.stringify({ subscribe: { consumer: 'pms-ws' } }));
    await createProducts('WS-next', 1);
    await until(() => resumed.some((m) => m.event));
    expect(resumed.find((m) => m.subscribed)?.subscribed?.after).toBe(events[4]!.seq);
    expect(resumed.find((m) => m.event)?.event?.aggregate.id).toBe('WS-next-0');
    ws.close();
    again.close();
  });
});

describe('two web processes', () => {
  it('stream 1,000 events to every client; a client that drops and reconnects to the other process sees no gap or duplicate', async () => {
    const [webA, webB] = await Promise.all([ctx.spawnWeb(), ctx.spawnWeb()]);
    try {
      const start = await head();
      const onA = openSse(`${webA.url}/api/pms/events/stream?after=${start}&types=product.*`, auth());
      const onB = openSse(`${webB.url}/api/pms/events/stream?after=${start}&types=product.*`, auth());
      expect([await onA.status, await onB.status]).toEqual([200, 200]);
      const total = 1000;
      await createProducts('TWO', total);

      // Drop the first connection a third of the way in; reconnect to the other process.
      await onA.waitFor((c) => c.events.length >= 300, 60_000);
      onA.close();
      const firstPart = [...onA.events];
      const reconnected = openSse(`${webB.url}/api/pms/events/stream?after=${start}&types=product.*`, {
        ...auth(),
        'last-event-id': onA.lastEventId!,
      });
      await reconnected.waitFor((c) => firstPart.length + c.events.length >= total, 90_000);
      await onB.waitFor((c) => c.events.length >= total, 90_000);

      const expected = (
        await ctx.api.db('events').where('seq', '>', start).andWhere('type', 'product.created').orderBy('seq')
      ).map((e) => e.seq as number);
      expect(expected).toHaveLength(total);
      const stitched = [...firstPart, ...reconnected.events].map((e) => Number(e.id));
      expect(stitched).toEqual(expected);
      expect(seqs(onB)).toEqual(expected);
      reconnected.close();
      onB.close();
    } finally {
      webA.child.kill('SIGTERM');
      webB.child.kill('SIGTERM');
      await Promise.all(
        [webA.child, webB.child].map(
          (c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r))),
        ),
      );
    }
  }, 150_000);
});
