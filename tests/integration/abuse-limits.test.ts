import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createApiKey } from '../../src/db/api-keys.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { rawRequest } from '../helpers/raw-http.js';
import { openSse } from '../helpers/sse.js';

/** Every limit of docs/security.md, each shown holding over a real socket. */

const listen = async (ctx: TestContext) => {
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  return (ctx.app.server.address() as AddressInfo).port;
};
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
/** GET /api/pms/products with this key over a raw socket. */
const products = (port: number, key: string) =>
  rawRequest(port, { method: 'GET', target: '/api/pms/products', headers: bearer(key) });

const answers: { status: number; retryAfter?: string; type?: string; body: string }[] = [];

/** N GETs at once over keep-alive sockets; the status of each (every answer is kept in `answers`). */
async function burst(
  port: number,
  key: string,
  n: number,
  path = '/api/pms/products?limit=1',
): Promise<number[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 50 });
  try {
    return await Promise.all(
      Array.from(
        { length: n },
        () =>
          new Promise<number>((resolve, reject) => {
            const req = http.get({ host: '127.0.0.1', port, path, agent, headers: bearer(key) }, (res) => {
              let body = '';
              res.on('data', (chunk) => {
                body += chunk;
              });
              res.on('end', () => {
                const retryAfter = res.headers['retry-after'];
                answers.push({
                  status: res.statusCode ?? 0,
                  retryAfter,
                  type: res.headers['content-type'],
                  body,
                });
                resolve(res.statusCode ?? 0);
              });
            });
            req.on('error', reject);
          }),
      ),
    );
  } finally {
    agent.destroy();
  }
}

describe('per-key request rate (Redis, shared by web processes)', () => {
  let ctx: TestContext;
  let port: number;
  beforeAll(async () => {
    ctx = await createTestContext({ env: { RATE_LIMIT_PER_SECOND: '20', RATE_LIMIT_BURST: '30' } });
    port = await listen(ctx);
  });
  afterAll(() => ctx?.close());

  it('answers 429 problem+json with Retry-After past the limit, counting the key across two web processes', async () => {
    const other = await ctx.spawnWeb();
    const otherPort = Number(new URL(other.url).port);
    try {
      const [here, there] = await Promise.all([
        burst(port, ctx.pmsKey, 60),
        burst(otherPort, ctx.pmsKey, 60),
      ]);
      const statuses = [...here, ...there];
      const ok = statuses.filter((s) => s === 200).length;
      expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
      // 120 requests against one budget of 20/s + a reserve of 10: even straddling two windows,
      // far fewer than 120 pass (each process alone would have let 60 through).
      expect(ok).toBeGreaterThanOrEqual(20);
      expect(ok).toBeLessThanOrEqual(80);
      const limited = answers.find((a) => a.status === 429)!;
      expect(Number(limited.retryAfter)).toBeGreaterThanOrEqual(1);
      expect(limited.type).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(limited.body)).toMatchObject({ status: 429, code: 'rate_limited' });
      // Another key has its own budget.
      expect((await products(port, ctx.adminKey)).status).toBe(200);
    } finally {
      other.child.kill('SIGTERM');
      await new Promise((r) => other.child.once('exit', r));
    }
  });
});

describe('per-key rate defaults', () => {
  let ctx: TestContext;
  let port: number;
  beforeAll(async () => {
    ctx = await createTestContext();
    port = await listen(ctx);
  });
  afterAll(() => ctx?.close());

  it('leave a concurrent burst of 500 requests untouched', async () => {
    expect(ctx.config.RATE_LIMIT_PER_SECOND).toBe(1000);
    expect(ctx.config.RATE_LIMIT_BURST).toBe(2000);
    const statuses = await burst(port, ctx.pmsKey, 500);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
  });

  it('refuse a flood of thousands a second', async () => {
    const limiter = ctx.api.limits.rates.perKey!;
    const outcomes = await Promise.allSettled(
      Array.from({ length: 5000 }, () => limiter.consume('flooding-key')),
    );
    const allowed = outcomes.filter((o) => o.status === 'fulfilled').length;
    expect(allowed).toBeGreaterThanOrEqual(2000);
    expect(allowed).toBeLessThan(5000);
  });
});

/** A listening context whose API-key lookups in Postgres are counted (knex's query event). */
async function countingLookups(failuresPerMinute: string) {
  const ctx = await createTestContext({ env: { AUTH_FAILURES_PER_MINUTE: failuresPerMinute } });
  const counted = { ctx, port: await listen(ctx), lookups: 0 };
  ctx.api.db.on('query', (query: { sql: string }) => {
    if (query.sql.includes('"api_keys"') && query.sql.startsWith('select')) counted.lookups++;
  });
  return counted;
}

describe('failed authentication per client IP', () => {
  let counted: Awaited<ReturnType<typeof countingLookups>>;
  beforeAll(async () => {
    counted = await countingLookups('10');
  });
  afterAll(() => counted?.ctx.close());

  it('stops looking keys up after the limit (429 + Retry-After), and a wrong key repeated costs no lookup', async () => {
    // Seen before the flood: a valid key this process knows keeps working from the same address.
    expect((await products(counted.port, counted.ctx.pmsKey)).status).toBe(200);
    const wrong = Array.from({ length: 150 }, (_, i) => `sf_wrong-${i}-${'x'.repeat(30)}`);
    counted.lookups = 0;
    const first: number[] = [];
    for (const key of wrong) {
      first.push((await products(counted.port, key)).status);
    }
    expect(first.slice(0, 10)).toEqual(Array(10).fill(401));
    expect(new Set(first.slice(10))).toEqual(new Set([429]));
    expect(counted.lookups).toBe(10);
    const limited = await products(counted.port, wrong[149]!);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(limited.body)).toMatchObject({ code: 'too_many_auth_failures' });
    expect((await products(counted.port, counted.ctx.pmsKey)).status).toBe(200);
  });
});

describe('failed authentication counted before the lookup', () => {
  let counted: Awaited<ReturnType<typeof countingLookups>>;
  beforeAll(async () => {
    counted = await countingLookups('10');
  });
  afterAll(() => counted?.ctx.close());

  it('answers 150 concurrent wrong keys with at most 10 401s (and lookups), the rest 429', async () => {
    const wrong = Array.from({ length: 150 }, (_, i) => `sf_burst-${i}-${'z'.repeat(30)}`);
    counted.lookups = 0;
    const statuses = await Promise.all(wrong.map((key) => products(counted.port, key).then((r) => r.status)));
    expect(statuses.filter((s) => s !== 401 && s !== 429)).toEqual([]);
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(10);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(140);
    expect(counted.lookups).toBeLessThanOrEqual(10);
  });
});

describe('a burst with one valid key from an address near its limit', () => {
  let counted: Awaited<ReturnType<typeof countingLookups>>;
  beforeAll(async () => {
    counted = await countingLookups('3');
  });
  afterAll(() => counted?.ctx.close());

  it('passes whole: its key is counted once and given back when it verifies', async () => {
    // Two failures: one attempt left before the limit.
    for (const key of ['sf_nope-1', 'sf_nope-2'])
      expect((await products(counted.port, key)).status).toBe(401);
    const fresh = await createApiKey(counted.ctx.api.db, { name: 'burst-pms', scopes: ['pms'] });
    counted.lookups = 0;
    const statuses = await burst(counted.port, fresh.key, 100);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(counted.lookups).toBe(1);
    // The attempt was given back: the address still has exactly one attempt left.
    expect((await products(counted.port, 'sf_nope-3')).status).toBe(401);
    expect((await products(counted.port, 'sf_nope-4')).status).toBe(429);
  });
});

describe('remembered unknown keys', () => {
  let counted: Awaited<ReturnType<typeof countingLookups>>;
  beforeAll(async () => {
    counted = await countingLookups('1000');
  });
  afterAll(() => counted?.ctx.close());

  it('looks each of 150 wrong keys up once, not again when they are repeated', async () => {
    const wrong = Array.from({ length: 150 }, (_, i) => `sf_again-${i}-${'y'.repeat(30)}`);
    for (const round of [1, 2]) {
      for (const key of wrong) {
        const res = await products(counted.port, key);
        expect(res.status).toBe(401);
      }
      expect(counted.lookups, `after round ${round}`).toBe(150);
    }
  });
});

describe('stream caps, wait cap, resume positions, consumers', () => {
  let ctx: TestContext;
  let port: number;
  beforeAll(async () => {
    ctx = await createTestContext({
      env: {
        STREAMS_PER_KEY: '2',
        STREAMS_PER_PROCESS: '3',
        WAIT_MAX_CONCURRENT: '1',
        CONSUMERS_PER_KEY: '2',
      },
    });
    port = await listen(ctx);
  });
  afterAll(() => ctx?.close());

  const sse = (key: string) => openSse(`http://127.0.0.1:${port}/api/pms/events/stream`, bearer(key));
  const upgrade = (key: string) =>
    rawRequest(port, {
      method: 'GET',
      target: '/api/pms/events/ws',
      headers: {
        ...bearer(key),
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      },
    });

  it('caps SSE + WebSocket streams per key and per process (429 before any upgrade), and frees a slot on close', async () => {
    const a = sse(ctx.pmsKey);
    const ws = new WebSocket(`ws://127.0.0.1:${port}/api/pms/events/ws`, { headers: bearer(ctx.pmsKey) });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    expect(await a.status).toBe(200);

    const third = await upgrade(ctx.pmsKey);
    expect(third.status).toBe(429);
    expect(JSON.parse(third.body)).toMatchObject({
      code: 'too_many_streams',
      details: { per: 'key', limit: 2 },
    });
    const thirdSse = await rawRequest(port, {
      method: 'GET',
      target: '/api/pms/events/stream',
      headers: bearer(ctx.pmsKey),
    });
    expect(thirdSse.status).toBe(429);

    const adminKey = (await createApiKey(ctx.api.db, { name: 'second-pms', scopes: ['pms'] })).key;
    const b = sse(adminKey);
    expect(await b.status).toBe(200);
    const full = await rawRequest(port, {
      method: 'GET',
      target: '/api/pms/events/stream',
      headers: bearer(adminKey),
    });
    expect(full.status).toBe(429);
    expect(JSON.parse(full.body)).toMatchObject({ details: { per: 'process', limit: 3 } });

    ws.close();
    await new Promise((r) => ws.once('close', r));
    const again = sse(ctx.pmsKey);
    await expect
      .poll(async () => {
        const s = await again.status;
        return s;
      })
      .toBe(200);
    for (const client of [a, b, again]) client.close();
  });

  it('answers the 202 at once beyond WAIT_MAX_CONCURRENT waiting requests', async () => {
    const body = (sku: string) => JSON.stringify({ sku, name: 'Mug', price: { amount: 1, currency: 'EUR' } });
    const post = (sku: string) => {
      const started = performance.now();
      return rawRequest(port, {
        method: 'POST',
        target: '/api/pms/products',
        headers: { ...bearer(ctx.pmsKey), prefer: 'wait=3' },
        body: body(sku),
      }).then((res) => ({ res, ms: performance.now() - started }));
    };
    // No workers: a waiting request waits its full 3 s.
    const waiting = post('W-1');
    await new Promise((r) => setTimeout(r, 200));
    const immediate = await post('W-2');
    expect(immediate.res.status).toBe(202);
    expect(immediate.res.headers['preference-applied']).toBeUndefined();
    const waited = await waiting;
    expect(waited.res.status).toBe(202);
    expect(waited.ms).toBeGreaterThanOrEqual(2900);
    expect(immediate.ms).toBeLessThan(waited.ms - 1000);
  });

  it('refuses resume positions beyond the head of the log with 400 position_ahead_of_log', async () => {
    const ahead = 999_999;
    for (const [target, headers] of [
      [`/api/pms/events?after=${ahead}`, {}],
      [`/api/pms/events/stream?after=${ahead}`, {}],
      ['/api/pms/events/stream', { 'last-event-id': String(ahead) }],
    ] as const) {
      const res = await rawRequest(port, {
        method: 'GET',
        target,
        headers: { ...bearer(ctx.pmsKey), ...headers },
      });
      expect(res.status, target).toBe(400);
      expect(JSON.parse(res.body)).toMatchObject({ code: 'position_ahead_of_log' });
    }
    const ws = new WebSocket(`ws://127.0.0.1:${port}/api/pms/events/ws`, { headers: bearer(ctx.pmsKey) });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const message = new Promise<unknown>((resolve) =>
      ws.once('message', (data) => resolve(JSON.parse(String(data)))),
    );
    ws.send(JSON.stringify({ subscribe: { after: ahead } }));
    expect(await message).toMatchObject({ error: { code: 'position_ahead_of_log' } });
    ws.close();
  });

  it('caps the consumers one key creates; existing ones keep acking', async () => {
    const ack = (consumer: string) =>
      ctx.request({ method: 'POST', url: '/api/pms/sync/ack', payload: { consumer, seq: 0 } });
    expect((await ack('c-1')).statusCode).toBe(200);
    expect((await ack('c-2')).statusCode).toBe(200);
    const third = await ack('c-3');
    expect(third.statusCode).toBe(429);
    expect(json(third)).toMatchObject({ code: 'too_many_consumers', details: { limit: 2 } });
    expect((await ack('c-1')).statusCode).toBe(200);
    const status = json(await ctx.request({ method: 'GET', url: '/api/pms/sync/status' }));
    expect(status.consumers.map((c: { consumer: string }) => c.consumer)).toEqual(['c-1', 'c-2']);
  });
});

describe('bounded reads', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext();
  });
  afterAll(() => ctx?.close());

  it('looks at most 10,000 positions for one page of a rare type filter', async () => {
    await ctx.api.db.raw(
      `insert into events (type, aggregate_type, aggregate_id, data)
       select 'location.updated', 'location', 'L' || g,
              jsonb_build_object('location', jsonb_build_object('code', 'L' || g, 'name', 'Dock', 'priority', 0,
                'active', true, 'version', 1, 'createdAt', now(), 'updatedAt', now()))
       from generate_series(1, 25000) g`,
    );
    const page = json(
      await ctx.request({ method: 'GET', url: '/api/pms/events?types=product.archived&after=0' }),
    );
    expect(page.items).toEqual([]);
    expect(page.nextAfter).toBe(10_000);
    const next = json(
      await ctx.request({
        method: 'GET',
        url: `/api/pms/events?types=product.archived&after=${page.nextAfter}`,
      }),
    );
    expect(next.nextAfter).toBe(20_000);
    // sync/status counts lag with a bound too.
    await ctx.request({ method: 'POST', url: '/api/pms/sync/ack', payload: { consumer: 'slow', seq: 0 } });
    const status = json(await ctx.request({ method: 'GET', url: '/api/pms/sync/status' }));
    expect(status.consumers[0]).toMatchObject({ consumer: 'slow', lag: 25_000, lagCapped: false });
  });
});

describe('HTTP timeouts', () => {
  let ctx: TestContext;
  let port: number;
  beforeAll(async () => {
    ctx = await createTestContext({
      env: {
        HTTP_REQUEST_TIMEOUT_MS: '1500',
        HTTP_HEADERS_TIMEOUT_MS: '1000',
        HTTP_KEEP_ALIVE_TIMEOUT_MS: '500',
      },
    });
    port = await listen(ctx);
  });
  afterAll(() => ctx?.close());

  /** Opens a socket, writes `data`, and resolves with how long the server took to close it. */
  function closedAfter(data: string): Promise<{ ms: number; answer: string }> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      const started = performance.now();
      let answer = '';
      const guard = setTimeout(() => {
        socket.destroy();
        reject(new Error('the server kept the socket open for 10 s'));
      }, 10_000);
      socket.on('data', (chunk) => {
        answer += chunk.toString();
      });
      socket.on('close', () => {
        clearTimeout(guard);
        resolve({ ms: performance.now() - started, answer });
      });
      socket.on('error', () => undefined);
      socket.write(data);
    });
  }

  it('closes a connection whose body trickles in, once the request timeout passes', async () => {
    const head = `POST /api/pms/products HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${ctx.pmsKey}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"sku":`;
    const { ms, answer } = await closedAfter(head);
    expect(ms).toBeGreaterThanOrEqual(1400);
    expect(ms).toBeLessThan(6000);
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
  });

  it('closes a connection whose headers never end, once the headers timeout passes', async () => {
    const { ms } = await closedAfter('GET /healthz HTTP/1.1\r\nhost: x\r\n');
    expect(ms).toBeGreaterThanOrEqual(900);
    expect(ms).toBeLessThan(6000);
  });

  it('closes an idle keep-alive connection after the keep-alive timeout', async () => {
    const { ms, answer } = await closedAfter('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    expect(ms).toBeGreaterThanOrEqual(400);
    expect(ms).toBeLessThan(6000);
  });
});
