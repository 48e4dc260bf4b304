import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createApiKey, revokeApiKey } from '../../src/db/api-keys.js';
import { createProducts, createTestContext, type TestContext } from '../helpers/context.js';

/**
 * Security report, finding 4: any key moved another key's event consumer forward. A consumer now
 * belongs to the key that created it: only that key moves it (sync/ack, WebSocket ack), resumes
 * from it (WebSocket subscribe) and sees it in sync/status; an admin key acts on and sees every
 * consumer; a consumer whose key was revoked goes to the next key that acks it (key rotation).
 * Over real sockets: HTTP and `ws`.
 */

let ctx: TestContext;
let base: string;
let otherKey: string;
beforeAll(async () => {
  ctx = await createTestContext({ workers: ['products'] });
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(ctx.app.server.address() as AddressInfo).port}`;
  otherKey = (await createApiKey(ctx.api.db, { name: 'other-pms', scopes: ['pms'] })).key;
  await createProducts(ctx, ['CO-1', 'CO-2', 'CO-3', 'CO-4']);
});
afterAll(() => ctx.close());

async function call(key: string, method: string, path: string, body?: unknown) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}
const ack = (key: string, consumer: string, seq: number) =>
  call(key, 'POST', '/api/pms/sync/ack', { consumer, seq });
const consumers = async (key: string) =>
  (
    (await call(key, 'GET', '/api/pms/sync/status')).body.consumers as {
      consumer: string;
      ackedSeq: number;
      owner: string;
    }[]
  ).map((c) => `${c.consumer}@${c.ackedSeq} (${c.owner})`);

/** One WebSocket exchange: sends `message`, resolves with the first answer. */
async function wsAsk(key: string, message: unknown): Promise<Record<string, unknown>> {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/api/pms/events/ws`, {
    headers: { authorization: `Bearer ${key}` },
  });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const answer = new Promise<Record<string, unknown>>((resolve) =>
    ws.once('message', (raw) => resolve(JSON.parse(raw.toString()))),
  );
  ws.send(JSON.stringify(message));
  try {
    return await answer;
  } finally {
    ws.close();
  }
}

it("refuses another key's consumer on sync/ack, WebSocket ack and subscribe, and hides it from sync/status", async () => {
  expect((await ack(ctx.pmsKey, 'pms-main', 2)).status).toBe(200);

  const moved = await ack(otherKey, 'pms-main', 4);
  expect(moved.status).toBe(403);
  expect(moved.body).toMatchObject({ code: 'consumer_not_owned', details: { consumer: 'pms-main' } });
  expect(await wsAsk(otherKey, { ack: 4, consumer: 'pms-main' })).toMatchObject({
    error: { code: 'consumer_not_owned' },
  });
  expect(await wsAsk(otherKey, { subscribe: { consumer: 'pms-main' } })).toMatchObject({
    error: { code: 'consumer_not_owned' },
  });
  // Its position did not move, and only its owner (and admin keys) see it.
  expect(await consumers(ctx.pmsKey)).toEqual(['pms-main@2 (test-pms)']);
  expect((await ack(otherKey, 'other-main', 1)).status).toBe(200);
  expect(await consumers(otherKey)).toEqual(['other-main@1 (other-pms)']);
  expect(await consumers(ctx.adminKey)).toEqual(['other-main@1 (other-pms)', 'pms-main@2 (test-pms)']);

  // The owner goes on as before, over HTTP and WebSocket.
  expect((await ack(ctx.pmsKey, 'pms-main', 3)).body.ackedSeq).toBe(3);
  expect(await wsAsk(ctx.pmsKey, { ack: 4, consumer: 'pms-main' })).toMatchObject({
    acked: { consumer: 'pms-main', ackedSeq: 4 },
  });
});

it('lets an admin key move any consumer without taking it over', async () => {
  await ack(ctx.pmsKey, 'admin-moved', 1);
  expect((await ack(ctx.adminKey, 'admin-moved', 3)).body.ackedSeq).toBe(3);
  expect(await consumers(ctx.pmsKey)).toContain('admin-moved@3 (test-pms)');
  expect((await ack(otherKey, 'admin-moved', 4)).status).toBe(403);
});

it("gives a revoked key's consumer, or one from before owners, to the next key that acks it", async () => {
  const old = await createApiKey(ctx.api.db, { name: 'rotated-out', scopes: ['pms'] });
  expect((await ack(old.key, 'rotating', 2)).status).toBe(200);
  expect((await ack(otherKey, 'rotating', 3)).status).toBe(403);
  await revokeApiKey(ctx.api.db, 'rotated-out');
  expect((await ack(otherKey, 'rotating', 3)).body.ackedSeq).toBe(3);
  expect(await consumers(otherKey)).toContain('rotating@3 (other-pms)');
  // Now it is that key's: the first one's other keys cannot take it.
  expect((await ack(ctx.pmsKey, 'rotating', 4)).status).toBe(403);

  await ctx.api.db('event_consumers').insert({ name: 'legacy', acked_seq: 1, api_key_id: null });
  expect((await ack(ctx.pmsKey, 'legacy', 2)).status).toBe(200);
  expect(await consumers(ctx.pmsKey)).toContain('legacy@2 (test-pms)');
});
