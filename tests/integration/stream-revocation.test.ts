import type { AddressInfo } from 'node:net';
import { EventSource } from 'eventsource';
import { afterAll, beforeAll, expect, it } from 'vitest';
import WebSocket from 'ws';
import { announceApiKeysChanged } from '../../src/api/auth.js';
import { keyRevokedCloseCode } from '../../src/api/event-stream.js';
import { createApiKey, revokeApiKey } from '../../src/db/api-keys.js';
import { createProducts, createTestContext, exitOf, type TestContext } from '../helpers/context.js';
import { until } from '../helpers/until.js';

/**
 * Security report, finding 2: a revoked key kept its open SSE and WebSocket streams, which went
 * on delivering events. Revoking a key (what `npm run keys -- revoke` does: the row, then the
 * Redis message) closes its streams in every web process within 2 s; a revocation whose message
 * was lost, or an expiry, closes them at the next re-check. Real sockets, the `eventsource`
 * client and `ws`, two spawned web processes besides the in-process one.
 */

let ctx: TestContext;
let base: string;
beforeAll(async () => {
  ctx = await createTestContext({
    workers: ['products'],
    // The periodic re-check is far off, so only the Redis message can explain a close within 2 s.
    env: { EVENT_STREAM_POLL_MS: '100', EVENT_STREAM_KEY_CHECK_MS: '600000' },
  });
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(ctx.app.server.address() as AddressInfo).port}`;
});
afterAll(() => ctx.close());

/** An EventSource with the key; records when it opened, its events, and when its connection failed. */
function openSse(url: string, key: string) {
  const state = { opened: 0, endedAt: [] as number[], events: [] as string[] };
  const source = new EventSource(`${url}/api/pms/events/stream`, {
    fetch: (input, init) =>
      fetch(input, { ...init, headers: { ...init.headers, authorization: `Bearer ${key}` } }),
  });
  source.onopen = () => {
    state.opened++;
  };
  source.onerror = () => state.endedAt.push(Date.now());
  source.onmessage = (message) => state.events.push(message.data);
  return { source, state };
}

/** A subscribed WebSocket with the key; resolves `closed` with its close code and time. */
async function openWs(url: string, key: string) {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/api/pms/events/ws`, {
    headers: { authorization: `Bearer ${key}` },
  });
  const closed = new Promise<{ code: number; at: number }>((resolve) =>
    ws.once('close', (code) => resolve({ code, at: Date.now() })),
  );
  const subscribed = new Promise((resolve) => ws.once('message', resolve));
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  ws.send(JSON.stringify({ subscribe: {} }));
  await subscribed;
  return { ws, closed };
}

/** The promise's value, or a failure naming `what` after `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms),
    ),
  ]);
}

it('revoking a key closes its streams in every web process within 2 s; another key keeps its own', async () => {
  const [webA, webB] = await Promise.all([ctx.spawnWeb(), ctx.spawnWeb()]);
  const doomed = await createApiKey(ctx.api.db, { name: 'doomed', scopes: ['pms'] });
  const kept = await createApiKey(ctx.api.db, { name: 'kept', scopes: ['pms'] });
  const sseA = openSse(webA.url, doomed.key);
  const keptSse = openSse(webB.url, kept.key);
  try {
    const wsB = await openWs(webB.url, doomed.key);
    const wsHere = await openWs(base, doomed.key);
    await until(
      'the SSE streams to open',
      () => sseA.state.opened + keptSse.state.opened,
      (n) => n === 2,
    );
    // The doomed key's stream delivers, as it should while the key is valid.
    await createProducts(ctx, ['RV-1']);
    await until(
      'the first event',
      () => sseA.state.events.length,
      (n) => n === 1,
    );

    const revokedAt = Date.now();
    expect(await revokeApiKey(ctx.api.db, 'doomed')).toHaveLength(1);
    await announceApiKeysChanged(ctx.api.redis, ctx.config.QUEUE_PREFIX);

    const [b, here] = await within(Promise.all([wsB.closed, wsHere.closed]), 5000, 'the WebSockets to close');
    await until(
      'the SSE stream to end',
      () => sseA.state.endedAt.length,
      (n) => n > 0,
      5000,
      10,
    );
    for (const [where, closedAt] of [
      ['SSE, web process A', sseA.state.endedAt[0]!],
      ['WebSocket, web process B', b.at],
      ['WebSocket, in-process web', here.at],
    ] as const) {
      expect(closedAt - revokedAt, where).toBeLessThan(2000);
    }
    expect([b.code, here.code]).toEqual([keyRevokedCloseCode, keyRevokedCloseCode]);
    // The client reconnects by itself and is refused (401): the EventSource gives up for good.
    await until(
      'the EventSource to give up',
      () => sseA.source.readyState,
      (s) => s === EventSource.CLOSED,
    );
    expect(sseA.state.opened).toBe(1);

    // The other key's stream is still open and delivering; the revoked one got nothing more.
    await createProducts(ctx, ['RV-2']);
    await until(
      'the kept stream to deliver',
      () => keptSse.state.events.join(),
      (e) => e.includes('RV-2'),
    );
    expect(keptSse.source.readyState).toBe(EventSource.OPEN);
    expect(sseA.state.events.join()).not.toContain('RV-2');
  } finally {
    sseA.source.close();
    keptSse.source.close();
    for (const web of [webA, webB]) {
      web.child.kill('SIGTERM');
      await exitOf(web.child);
    }
  }
});

it('closes the stream of a key revoked without a message, or expired, at the next re-check', async () => {
  const web = await ctx.spawnWeb({ EVENT_STREAM_KEY_CHECK_MS: '300' });
  const quiet = await createApiKey(ctx.api.db, { name: 'quiet', scopes: ['pms'] });
  const expiresAt = new Date(Date.now() + 2000);
  const brief = await createApiKey(ctx.api.db, { name: 'brief', scopes: ['pms'], expiresAt });
  const sse = openSse(web.url, brief.key);
  try {
    const ws = await openWs(web.url, quiet.key);
    await until(
      'the SSE stream to open',
      () => sse.state.opened,
      (n) => n === 1,
    );
    // Revoked in the database only: no Redis message reaches the web process.
    await revokeApiKey(ctx.api.db, 'quiet');
    expect((await within(ws.closed, 5000, 'the WebSocket to close')).code).toBe(keyRevokedCloseCode);

    await until(
      'the expired key to lose its stream',
      () => sse.state.endedAt.length,
      (n) => n > 0,
      10_000,
    );
    expect(sse.state.endedAt[0]!).toBeGreaterThanOrEqual(expiresAt.getTime() - 100);
    await until(
      'the EventSource to give up',
      () => sse.source.readyState,
      (s) => s === EventSource.CLOSED,
    );
    // And the expired key is refused on every route, in this process too.
    expect((await ctx.request({ method: 'GET', url: '/api/pms/products', key: brief.key })).statusCode).toBe(
      401,
    );
  } finally {
    sse.source.close();
    web.child.kill('SIGTERM');
    await exitOf(web.child);
  }
});
