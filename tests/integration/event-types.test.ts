import type { AddressInfo } from 'node:net';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import WebSocket from 'ws';
import { eventTypes } from '../../src/schemas/event-types.js';
import { checkWrittenEvents, createTestContext, json, type TestContext } from '../helpers/context.js';

let ctx: TestContext;
let port: number;
beforeAll(async () => {
  ctx = await createTestContext({ workers: ['products', 'inventory'] });
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  port = (ctx.app.server.address() as AddressInfo).port;
});
afterAll(() => ctx.close());

it('lists every catalogue type with a JSON Schema that the events actually written satisfy', async () => {
  const listed = await ctx.request({ method: 'GET', url: '/api/pms/events/types' });
  expect(listed.statusCode).toBe(200);
  const { items } = json(listed) as {
    items: { name: string; description: string; writtenBy: string; dataSchema: object }[];
  };
  expect(items.map((t) => t.name)).toEqual(eventTypes.map((t) => t.name));
  expect(items.find((t) => t.name === 'stock.moved')?.writtenBy).toBe('trigger');

  // Real events: a product, a location, stock received through the trigger (from 0, so the
  // level is also back in stock).
  const wait = { prefer: 'wait=10' };
  for (const [url, payload] of [
    ['/api/pms/products', { sku: 'ET-1', name: 'Types', price: { amount: 100, currency: 'EUR' } }],
    ['/api/pms/locations', { code: 'et-store', name: 'Store' }],
    [
      '/api/pms/inventory/adjust',
      { movements: [{ sku: 'ET-1', location: 'et-store', delta: 3, reason: 'received' }] },
    ],
  ] as const) {
    const response = await ctx.request({ method: 'POST', url, payload, headers: wait });
    expect(response.statusCode, response.body).toBeLessThan(300);
  }
  const ajv = new Ajv2020({ strict: false });
  const rows = await ctx.api.db('events').select('type', 'data');
  expect(new Set(rows.map((r) => r.type))).toEqual(
    new Set(['product.created', 'location.created', 'stock.moved', 'inventory.back_in_stock']),
  );
  for (const row of rows) {
    const schema = items.find((t) => t.name === row.type)!.dataSchema;
    const validate = ajv.compile(schema);
    expect(validate(row.data), `${row.type}: ${ajv.errorsText(validate.errors)}`).toBe(true);
  }
  expect(await checkWrittenEvents(ctx.api.db)).toEqual([]);
});

it('finds an event type the catalogue does not declare, and a field its schema does not', async () => {
  await ctx.api.db
    .transaction(async (trx) => {
      await trx('events').insert({
        type: 'inventory.adjusted',
        aggregate_type: 't',
        aggregate_id: 'x',
        data: {},
      });
      await trx('events').insert({
        type: 'image.deleted',
        aggregate_type: 'image',
        aggregate_id: 'x',
        data: { id: 'x', sku: 'ET-1', deletedAt: new Date().toISOString(), secret: 1 },
      });
      expect((await checkWrittenEvents(trx)).sort()).toEqual([
        'image.deleted: data has undeclared field(s) secret',
        'inventory.adjusted is not in the catalogue',
      ]);
      // Leave the database as the context's own check expects it.
      await trx.rollback();
    })
    .catch(() => undefined);
});

it('refuses a WebSocket subscription to types that match nothing, naming the closest', async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/api/pms/events/ws`, {
    headers: { authorization: `Bearer ${ctx.pmsKey}` },
  });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const answer = new Promise<{ error: { code: string; suggestions: string[] } }>((resolve) =>
    ws.once('message', (raw) => resolve(JSON.parse(raw.toString()))),
  );
  ws.send(JSON.stringify({ subscribe: { types: ['product.*', 'prodcut.created'] } }));
  const { error } = await answer;
  expect(error.code).toBe('unknown_event_type');
  expect(error.suggestions[0]).toBe('product.created');
  ws.close();
});
