import type { AddressInfo } from 'node:net';
import type { Knex } from 'knex';
import { afterAll, beforeAll, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { until } from '../helpers/until.js';

/**
 * WebSocket subscribe as a state machine: a client that leaves mid-subscribe, or subscribes twice
 * at once, leaves exactly the subscriptions it should (none, or one) in the process's live hub.
 */

let ctx: TestContext;
let wsUrl: string;
beforeAll(async () => {
  ctx = await createTestContext({
    workers: ['products'],
    // A small pool the test can take whole, so a subscribe waits in the middle of its checks.
    env: { DATABASE_POOL_MAX: '3', EVENT_STREAM_POLL_MS: '100', EVENT_STREAM_HEARTBEAT_MS: '200' },
  });
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  wsUrl = `ws://127.0.0.1:${(ctx.app.server.address() as AddressInfo).port}/api/pms/events/ws`;
});
afterAll(() => ctx.close());

interface Message {
  event?: { seq: number; aggregate: { id: string } };
  subscribed?: unknown;
  error?: unknown;
}

async function connect(): Promise<{ ws: WebSocket; messages: Message[] }> {
  const ws = new WebSocket(wsUrl, { headers: { authorization: `Bearer ${ctx.pmsKey}` } });
  const messages: Message[] = [];
  ws.on('message', (raw) => messages.push(JSON.parse(raw.toString())));
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  return { ws, messages };
}

const hub = () => ctx.api.events.size();

async function createProduct(sku: string): Promise<void> {
  const res = await ctx.request({
    method: 'POST',
    url: '/api/pms/products',
    headers: { prefer: 'wait=10' },
    payload: { sku, name: 'Socket', price: { amount: 100, currency: 'EUR' } },
  });
  expect(res.statusCode).toBe(201);
}

it('two subscribes sent at once leave one subscription: every event once', async () => {
  await createProduct('WS-0');
  const after = json(await ctx.request({ method: 'GET', url: '/api/pms/events?limit=1' })).headSeq;
  const { ws, messages } = await connect();
  ws.send(JSON.stringify({ subscribe: { after, consumer: 'twice' } }));
  ws.send(JSON.stringify({ subscribe: { after, consumer: 'twice' } }));
  await until('subscribed', () => messages.some((m) => m.subscribed), Boolean);
  for (const sku of ['WS-1', 'WS-2', 'WS-3']) await createProduct(sku);
  await until(
    'three events',
    () => messages.filter((m) => m.event).length,
    (n) => n >= 3,
  );
  await new Promise((r) => setTimeout(r, 400)); // two polls: a second subscription would have sent by now
  const seqs = messages.flatMap((m) => (m.event ? [m.event.seq] : []));
  expect(messages.filter((m) => m.event).map((m) => m.event!.aggregate.id)).toEqual(['WS-1', 'WS-2', 'WS-3']);
  expect(new Set(seqs).size).toBe(seqs.length);
  expect(hub()).toBe(1);
  ws.close();
  await until('no subscriber left', hub, (n) => n === 0);
});

it('a client that disconnects mid-subscribe leaves no subscription behind', async () => {
  const { ws } = await connect();
  // Every connection of the pool is taken: the subscribe's position lookup waits for one.
  const held: Knex.Transaction[] = [];
  for (let i = 0; i < 3; i++) held.push(await ctx.api.db.transaction());
  ws.send(JSON.stringify({ subscribe: { consumer: 'leaver' } }));
  const closed = new Promise((resolve) => ws.once('close', resolve));
  ws.close();
  await closed;
  await new Promise((r) => setTimeout(r, 100)); // the server has seen the close
  for (const trx of held) await trx.rollback();
  // The pool serves waiters in order: once this query has run, so has the subscribe's lookup.
  await ctx.api.db.raw('select 1');
  await new Promise((r) => setTimeout(r, 200));
  expect(hub()).toBe(0);
  // And nothing polls for it: a new event reaches no one and the hub stays idle.
  await createProduct('WS-4');
  expect(hub()).toBe(0);
});
