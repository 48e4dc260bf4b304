import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { rawRequest } from '../helpers/raw-http.js';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext({
    workers: ['orders', 'inventory', 'products'],
    env: { RESERVATION_EXPIRY_INTERVAL_MS: '500' },
  });
  for (const code of ['north', 'south']) {
    const res = await post('/api/pms/locations', { code, name: code, priority: code === 'north' ? 10 : 20 });
    expect(res.statusCode, res.body).toBe(201);
  }
  for (const sku of ['A', 'B', 'C', 'D']) {
    const res = await post('/api/pms/products', { sku, name: sku, price: { amount: 100, currency: 'EUR' } });
    expect(res.statusCode, res.body).toBe(201);
  }
  // A: 5 north + 5 south; B: 20 north; C: 3 south; D: none.
  const res = await post('/api/pms/inventory/adjust', {
    movements: [
      { sku: 'A', location: 'north', delta: 5, reason: 'received' },
      { sku: 'A', location: 'south', delta: 5, reason: 'received' },
      { sku: 'B', location: 'north', delta: 20, reason: 'received' },
      { sku: 'C', location: 'south', delta: 3, reason: 'received' },
    ],
  });
  expect(res.statusCode, res.body).toBe(200);
});
afterAll(() => ctx.close());

type Body = Record<string, unknown>;
const wait = { prefer: 'wait=10' };
const post = (url: string, payload?: Body) =>
  ctx.request({ method: 'POST', url, headers: wait, ...(payload === undefined ? {} : { payload }) });
const get = (url: string) => ctx.request({ method: 'GET', url });
const level = (sku: string, location: string) =>
  ctx.api.db('inventory_levels').where({ sku, location }).first('on_hand', 'reserved');
const placeOrder = (orderNumber: string, lines: Body[], extra: Body = {}) =>
  post('/api/pms/orders', { orderNumber, currency: 'EUR', lines, ...extra });
const act = (orderNumber: string, action: string, payload?: Body) =>
  post(`/api/pms/orders/${orderNumber}/${action}`, payload);
const events = (orderNumber: string) =>
  ctx.api.db('events').where({ aggregate_type: 'order', aggregate_id: orderNumber }).orderBy('seq');

describe('placing an order', () => {
  it('reserves every line in one reservation owned by the order', async () => {
    const res = await placeOrder(
      'SO-1',
      [
        { sku: 'B', quantity: 2, unitPrice: 1999 },
        { sku: 'A', quantity: 7, unitPrice: 500 },
      ],
      { shipTo: { country: 'DE', postalCode: '10115' } },
    );
    expect(res.statusCode, res.body).toBe(201);
    const { order, movements } = json(res);
    expect(order).toMatchObject({
      orderNumber: 'SO-1',
      status: 'reserved',
      currency: 'EUR',
      shipTo: { country: 'DE', postalCode: '10115' },
      version: 1,
      confirmedAt: null,
    });
    expect(order.lines).toEqual([
      {
        line: 0,
        sku: 'B',
        unitPrice: 1999,
        ordered: 2,
        openReserved: 2,
        fulfilled: 0,
        cancelled: 0,
        returned: 0,
        restocked: 0,
      },
      {
        line: 1,
        sku: 'A',
        unitPrice: 500,
        ordered: 7,
        openReserved: 7,
        fulfilled: 0,
        cancelled: 0,
        returned: 0,
        restocked: 0,
      },
    ]);
    // A is split over north (5) and south (2): three reserve rows, all written by this job.
    expect(movements.map((m: Body) => [m.kind, m.sku, m.location, m.delta])).toEqual([
      ['reserve', 'B', 'north', 2],
      ['reserve', 'A', 'north', 5],
      ['reserve', 'A', 'south', 2],
    ]);
    expect(movements.every((m: Body) => m.jobId === res.headers.location!.slice('/api/jobs/'.length))).toBe(
      true,
    );
    const reservation = await ctx.api.db('reservations').where({ id: order.reservationId }).first();
    expect(reservation).toMatchObject({ owner: 'order', reference: 'SO-1', status: 'active' });
    expect(await level('A', 'south')).toEqual({ on_hand: 5, reserved: 2 });
    const [created] = await events('SO-1');
    expect(created).toMatchObject({ type: 'order.created', actor: 'test-pms' });
    expect(created.data.order).toMatchObject({ orderNumber: 'SO-1', status: 'reserved', version: 1 });
  });

  it('fails insufficient_stock with every short line and leaves no order, reservation or movement', async () => {
    const movements = await ctx.api.db('stock_movements').count<{ n: number }[]>('* as n');
    const res = await placeOrder('SO-SHORT', [
      { sku: 'B', quantity: 1, unitPrice: 1 },
      { sku: 'C', quantity: 4, unitPrice: 1 },
      { sku: 'D', quantity: 1, unitPrice: 1 },
    ]);
    expect(res.statusCode, res.body).toBe(409);
    const body = json(res);
    expect(body.code).toBe('insufficient_stock');
    expect(body.details.lines).toEqual([
      { index: 1, sku: 'C', location: null, requested: 4, requestedTotal: 4, available: 3 },
      { index: 2, sku: 'D', location: null, requested: 1, requestedTotal: 1, available: 0 },
    ]);
    expect(await ctx.api.db('orders').where({ order_number: 'SO-SHORT' }).first()).toBeUndefined();
    expect(await ctx.api.db('reservations').where({ reference: 'SO-SHORT' }).first()).toBeUndefined();
    expect(await ctx.api.db('stock_movements').count<{ n: number }[]>('* as n')).toEqual(movements);
  });

  it('refuses a taken order number and an unknown sku', async () => {
    const taken = await placeOrder('SO-1', [{ sku: 'B', quantity: 1, unitPrice: 1 }]);
    expect(taken.statusCode).toBe(409);
    expect(json(taken)).toMatchObject({ code: 'order_number_taken', details: { orderNumber: 'SO-1' } });
    const unknown = await placeOrder('SO-UNKNOWN', [{ sku: 'NOPE', quantity: 1, unitPrice: 1 }]);
    expect(unknown.statusCode).toBe(404);
    expect(json(unknown).details.lines).toEqual([{ index: 0, sku: 'NOPE', location: '', missing: ['sku'] }]);
    expect(await ctx.api.db('orders').where({ order_number: 'SO-UNKNOWN' }).first()).toBeUndefined();
  });

  it('lists every invalid field at intake and enqueues nothing', async () => {
    const before = await ctx.api.queues.orders.getJobCounts();
    const res = await post('/api/pms/orders', {
      orderNumber: 'x'.repeat(65),
      currency: 'EURO',
      lines: [
        { sku: 'A', quantity: 0, unitPrice: 10 ** 13 },
        { sku: 'B', quantity: 1, unitPrice: -1 },
        { sku: 'A', quantity: 1, unitPrice: 1 },
      ],
      shipTo: { country: 'XX' },
      holdSeconds: 0,
    });
    expect(res.statusCode).toBe(400);
    const paths = json(res)
      .errors.map((e: { path: string }) => e.path)
      .sort();
    expect(paths).toEqual([
      'currency',
      'holdSeconds',
      'lines.0.quantity',
      'lines.0.unitPrice',
      'lines.1.unitPrice',
      'lines.2.sku',
      'orderNumber',
      'shipTo.country',
    ]);
    expect(json(res).errors.find((e: { path: string }) => e.path === 'lines.2.sku').message).toBe(
      'repeats the sku of line 0',
    );
    const float = await post('/api/pms/orders', {
      orderNumber: 'SO-FLOAT',
      currency: 'EUR',
      lines: [{ sku: 'A', quantity: 1, unitPrice: 19.99 }],
    });
    expect(json(float).errors).toEqual([
      { in: 'body', path: 'lines.0.unitPrice', message: 'unitPrice must be an integer in minor units' },
    ]);
    const many = await post('/api/pms/orders', {
      orderNumber: 'SO-MANY',
      currency: 'EUR',
      lines: Array.from({ length: 501 }, (_, i) => ({ sku: `S${i}`, quantity: 1, unitPrice: 1 })),
    });
    expect(many.statusCode).toBe(400);
    expect(json(many).errors).toEqual([{ in: 'body', path: 'lines', message: 'at most 500 lines' }]);
    expect(await ctx.api.queues.orders.getJobCounts()).toEqual(before);
  });
});

describe('the order lifecycle', () => {
  it('confirms (no expiry), fulfils in parts at the allocated locations, and ends fulfilled', async () => {
    const confirmed = await act('SO-1', 'confirm');
    expect(confirmed.statusCode, confirmed.body).toBe(200);
    expect(json(confirmed).order).toMatchObject({ status: 'confirmed', version: 2 });
    const reservationId = json(confirmed).order.reservationId;
    expect((await ctx.api.db('reservations').where({ id: reservationId }).first()).expires_at).toBeNull();

    const part = await act('SO-1', 'fulfill', { lines: [{ sku: 'A', quantity: 6 }] });
    expect(part.statusCode, part.body).toBe(200);
    const { order, movements } = json(part);
    expect(order).toMatchObject({ status: 'partially_fulfilled', version: 3 });
    expect(order.lines[1]).toMatchObject({ sku: 'A', ordered: 7, openReserved: 1, fulfilled: 6 });
    // North's allocation first (5), then south's (1 of 2).
    expect(movements.map((m: Body) => [m.kind, m.sku, m.location, m.delta, m.reason, m.reference])).toEqual([
      ['commit', 'A', 'north', -5, 'sale', 'SO-1'],
      ['commit', 'A', 'south', -1, 'sale', 'SO-1'],
    ]);
    expect(await level('A', 'south')).toEqual({ on_hand: 4, reserved: 1 });

    const rest = await act('SO-1', 'fulfill');
    expect(rest.statusCode, rest.body).toBe(200);
    expect(json(rest).order).toMatchObject({ status: 'fulfilled', version: 4 });
    expect(json(rest).movements.map((m: Body) => [m.sku, m.location, m.delta])).toEqual([
      ['B', 'north', -2],
      ['A', 'south', -1],
    ]);
    const reservation = await ctx.api.db('reservations').where({ id: reservationId }).first();
    expect(reservation.status).toBe('committed');
    expect(await level('A', 'south')).toEqual({ on_hand: 3, reserved: 0 });

    expect((await events('SO-1')).map((e) => [e.type, e.data.order.version])).toEqual([
      ['order.created', 1],
      ['order.confirmed', 2],
      ['order.partially_fulfilled', 3],
      ['order.fulfilled', 4],
    ]);
    const [, , partial] = await events('SO-1');
    expect(partial.data.fulfilment).toEqual({
      lines: [{ sku: 'A', quantity: 6 }],
      movements: [
        { id: movements[0].id, sku: 'A', location: 'north', quantity: 5 },
        { id: movements[1].id, sku: 'A', location: 'south', quantity: 1 },
      ],
    });
  });

  it('refuses a transition the status does not allow, naming the status and the allowed actions', async () => {
    const again = await act('SO-1', 'fulfill');
    expect(again.statusCode).toBe(409);
    expect(json(again)).toMatchObject({
      code: 'invalid_transition',
      details: {
        orderNumber: 'SO-1',
        currentStatus: 'fulfilled',
        action: 'fulfill',
        allowedActions: ['return'],
      },
    });
    const cancel = await act('SO-1', 'cancel');
    expect(json(cancel).details).toMatchObject({ currentStatus: 'fulfilled', allowedActions: ['return'] });

    expect((await placeOrder('SO-2', [{ sku: 'B', quantity: 3, unitPrice: 1 }])).statusCode).toBe(201);
    const early = await act('SO-2', 'fulfill');
    expect(json(early).details).toMatchObject({
      currentStatus: 'reserved',
      allowedActions: ['confirm', 'cancel', 'expire'],
    });
    const missing = await act('NOPE', 'confirm');
    expect(missing.statusCode).toBe(404);
    expect(json(missing)).toMatchObject({ code: 'not_found', details: { orderNumber: 'NOPE' } });
  });

  it('refuses to fulfil more than is still reserved, or a sku the order lacks, and changes nothing', async () => {
    expect((await act('SO-2', 'confirm')).statusCode).toBe(200);
    const over = await act('SO-2', 'fulfill', { lines: [{ sku: 'B', quantity: 4 }] });
    expect(over.statusCode).toBe(409);
    expect(json(over)).toMatchObject({
      code: 'insufficient_reserved',
      details: { lines: [{ index: 0, sku: 'B', requested: 4, openReserved: 3 }] },
    });
    const other = await act('SO-2', 'fulfill', { lines: [{ sku: 'C', quantity: 1 }] });
    expect(other.statusCode).toBe(404);
    expect(json(other).details.lines).toEqual([{ index: 0, sku: 'C' }]);
    const order = json(await get('/api/pms/orders/SO-2'));
    expect(order).toMatchObject({ status: 'confirmed', version: 2 });
  });

  it('cancels a partly fulfilled order: releases only what is still reserved, fulfilled units stay sold', async () => {
    expect((await act('SO-2', 'fulfill', { lines: [{ sku: 'B', quantity: 1 }] })).statusCode).toBe(200);
    const before = await level('B', 'north');
    const res = await act('SO-2', 'cancel');
    expect(res.statusCode, res.body).toBe(200);
    const { order, movements } = json(res);
    expect(order).toMatchObject({ status: 'cancelled', version: 4 });
    expect(order.lines[0]).toMatchObject({ ordered: 3, openReserved: 0, fulfilled: 1, cancelled: 2 });
    expect(movements.map((m: Body) => [m.kind, m.location, m.delta, m.reason])).toEqual([
      ['release', 'north', -2, 'released'],
    ]);
    expect(await level('B', 'north')).toEqual({ on_hand: before.on_hand, reserved: before.reserved - 2 });
    const reservation = json(await get('/api/pms/orders/SO-2')).reservation;
    expect(reservation).toMatchObject({ status: 'released' });
    expect(reservation.lines).toEqual([
      expect.objectContaining({ sku: 'B', quantity: 3, committed: 1, released: 2 }),
    ]);
  });

  it('records returns: restocked ones as return movements where the units came from, others only on the order', async () => {
    const restocked = await act('SO-1', 'returns', { lines: [{ sku: 'A', quantity: 6 }], restock: true });
    expect(restocked.statusCode, restocked.body).toBe(200);
    // A was committed 5 north, 2 south: returned units go back there, north first.
    expect(json(restocked).movements.map((m: Body) => [m.kind, m.location, m.delta, m.reason])).toEqual([
      ['return', 'north', 5, 'returned'],
      ['return', 'south', 1, 'returned'],
    ]);
    expect(json(restocked).order).toMatchObject({ status: 'fulfilled', version: 5 });
    expect(json(restocked).order.lines[1]).toMatchObject({ fulfilled: 7, returned: 6, restocked: 6 });

    const recorded = await act('SO-1', 'returns', {
      lines: [{ sku: 'A', quantity: 1 }],
      restock: false,
      note: 'damaged in transit',
    });
    expect(recorded.statusCode, recorded.body).toBe(200);
    expect(json(recorded).movements).toEqual([]);
    expect(json(recorded).order.lines[1]).toMatchObject({ returned: 7, restocked: 6 });

    const tooMany = await act('SO-1', 'returns', { lines: [{ sku: 'A', quantity: 1 }], restock: true });
    expect(tooMany.statusCode).toBe(409);
    expect(json(tooMany)).toMatchObject({
      code: 'return_exceeds_fulfilled',
      details: { lines: [{ index: 0, sku: 'A', requested: 1, returnable: 0 }] },
    });
    // A cancelled order's fulfilled units come back too, here at a named location.
    const named = await act('SO-2', 'returns', {
      lines: [{ sku: 'B', quantity: 1 }],
      restock: true,
      location: 'south',
    });
    expect(named.statusCode, named.body).toBe(200);
    expect(json(named).movements.map((m: Body) => [m.location, m.delta])).toEqual([['south', 1]]);
    expect(json(named).order.status).toBe('cancelled');
    const bad = await post('/api/pms/orders/SO-2/returns', {
      lines: [{ sku: 'B', quantity: 1 }],
      restock: false,
      location: 'south',
    });
    expect(bad.statusCode).toBe(400);
    expect(json(bad).errors).toEqual([{ in: 'body', path: 'location', message: 'only with restock: true' }]);
  });

  it('expires a reserved order when its reservation expires, in the same transaction', async () => {
    const res = await placeOrder('SO-EXP', [{ sku: 'C', quantity: 2, unitPrice: 1 }], { holdSeconds: 1 });
    expect(res.statusCode, res.body).toBe(201);
    const reservationId = json(res).order.reservationId;
    const deadline = Date.now() + 15_000;
    let order = json(await get('/api/pms/orders/SO-EXP'));
    while (order.status !== 'expired' && Date.now() < deadline) {
      // Past its expiry but before the scheduler ran, it can no longer be confirmed.
      if (Date.parse(order.reservation.expiresAt) < Date.now() && order.status === 'reserved') {
        const late = await act('SO-EXP', 'confirm');
        if (late.statusCode === 409) expect(json(late).details.currentStatus).toBe('expired');
      }
      await new Promise((r) => setTimeout(r, 100));
      order = json(await get('/api/pms/orders/SO-EXP'));
    }
    expect(order).toMatchObject({ status: 'expired', version: 2 });
    expect(order.lines[0]).toMatchObject({ ordered: 2, openReserved: 0, cancelled: 2 });
    expect(order.reservation).toMatchObject({ id: reservationId, status: 'expired' });
    expect(await level('C', 'south')).toEqual({ on_hand: 3, reserved: 0 });
    // Order and reservation moved in one job: the same job id on the history, the events and the release.
    const expiry = order.history.at(-1);
    expect(expiry).toMatchObject({
      action: 'expire',
      fromStatus: 'reserved',
      toStatus: 'expired',
      actor: 'system',
    });
    const release = order.movements.find((m: Body) => m.kind === 'release');
    expect(release).toMatchObject({ reason: 'expired', jobId: expiry.jobId });
    const expired = (await events('SO-EXP')).at(-1)!;
    expect(expired).toMatchObject({ type: 'order.expired', job_id: expiry.jobId });
    expect(json(await act('SO-EXP', 'cancel')).details).toMatchObject({
      currentStatus: 'expired',
      allowedActions: [],
    });
  });

  it('refuses the reservation routes on a reservation an order owns', async () => {
    expect((await placeOrder('SO-OWN', [{ sku: 'B', quantity: 1, unitPrice: 1 }])).statusCode).toBe(201);
    const { reservationId } = json(await get('/api/pms/orders/SO-OWN'));
    for (const action of ['commit', 'release']) {
      const res = await post(`/api/pms/inventory/reservations/${reservationId}/${action}`);
      expect(res.statusCode).toBe(409);
      expect(json(res)).toMatchObject({
        code: 'invalid_transition',
        details: { owner: 'order', reference: 'SO-OWN' },
      });
    }
    const extend = await post(`/api/pms/inventory/reservations/${reservationId}/extend`, { ttlSeconds: 60 });
    expect(json(extend).details).toMatchObject({ owner: 'order' });
    expect((await act('SO-OWN', 'cancel')).statusCode).toBe(200);
  });
});

describe('reading orders', () => {
  it('shows lines, reservation, every movement and the history of changes (who, when, which job)', async () => {
    const res = await get('/api/pms/orders/SO-1');
    expect(res.statusCode).toBe(200);
    const order = json(res);
    expect(order.history.map((h: Body) => [h.action, h.fromStatus, h.toStatus, h.version, h.actor])).toEqual([
      ['create', null, 'reserved', 1, 'test-pms'],
      ['confirm', 'reserved', 'confirmed', 2, 'test-pms'],
      ['fulfill', 'confirmed', 'partially_fulfilled', 3, 'test-pms'],
      ['fulfill', 'partially_fulfilled', 'fulfilled', 4, 'test-pms'],
      ['return', 'fulfilled', 'fulfilled', 5, 'test-pms'],
      ['return', 'fulfilled', 'fulfilled', 6, 'test-pms'],
    ]);
    expect(order.history.every((h: Body) => String(h.jobId).startsWith('orders-') && h.at)).toBe(true);
    expect(order.movements.map((m: Body) => m.kind)).toEqual([
      'reserve',
      'reserve',
      'reserve',
      'commit',
      'commit',
      'commit',
      'commit',
      'return',
      'return',
    ]);
    expect(order.returns.map((r: Body) => [r.sku, r.quantity, r.restock, r.location, r.note])).toEqual([
      ['A', 5, true, 'north', null],
      ['A', 1, true, 'south', null],
      ['A', 1, false, null, 'damaged in transit'],
    ]);
    expect(order.reservation).toMatchObject({ status: 'committed', owner: 'order', expiresAt: null });
  });

  it('lists orders by status and creation time with a keyset cursor', async () => {
    const all = json(await get('/api/pms/orders?limit=2'));
    expect(all.items.map((o: Body) => o.orderNumber)).toEqual(['SO-1', 'SO-2']);
    const next = json(await get(`/api/pms/orders?limit=2&cursor=${all.nextCursor}`));
    expect(next.items.map((o: Body) => o.orderNumber)).toEqual(['SO-EXP', 'SO-OWN']);
    expect(next.nextCursor).toBeNull();
    const cancelled = json(await get('/api/pms/orders?status=cancelled'));
    expect(cancelled.items.map((o: Body) => o.orderNumber)).toEqual(['SO-2', 'SO-OWN']);
    const future = json(await get('/api/pms/orders?since=2999-01-01T00:00:00Z'));
    expect(future).toEqual({ items: [], nextCursor: null });
    const bad = await get('/api/pms/orders?status=shipped&limit=0');
    expect(bad.statusCode).toBe(400);
    expect(
      json(bad)
        .errors.map((e: Body) => e.path)
        .sort(),
    ).toEqual(['limit', 'status']);
  });

  it('answers over a real socket: 202 with Location to follow, and 404 problems for unknown orders', async () => {
    await ctx.app.listen({ host: '127.0.0.1', port: 0 });
    const port = (ctx.app.server.address() as AddressInfo).port;
    const auth = { authorization: `Bearer ${ctx.pmsKey}` };
    const placed = await rawRequest(port, {
      method: 'POST',
      target: '/api/pms/orders',
      headers: auth,
      body: JSON.stringify({
        orderNumber: 'SO-RAW',
        currency: 'EUR',
        lines: [{ sku: 'B', quantity: 1, unitPrice: 5 }],
      }),
    });
    expect(placed.status).toBe(202);
    expect(placed.headers.location).toMatch(/^\/api\/jobs\/orders-/);
    await ctx.waitForJob(placed.headers.location!.slice('/api/jobs/'.length));
    const job = await rawRequest(port, { method: 'GET', target: placed.headers.location!, headers: auth });
    expect(JSON.parse(job.body)).toMatchObject({
      state: 'completed',
      result: { order: { orderNumber: 'SO-RAW' } },
    });
    const unknown = await rawRequest(port, { method: 'GET', target: '/api/pms/orders/NOPE', headers: auth });
    expect(unknown.status).toBe(404);
    expect(unknown.headers['content-type']).toMatch(/^application\/problem\+json/);
    const anonymous = await rawRequest(port, { method: 'GET', target: '/api/pms/orders/SO-RAW' });
    expect(anonymous.status).toBe(401);
  });
});

describe('OpenAPI', () => {
  it('documents every order route with an example', async () => {
    const docs = json(await ctx.request({ method: 'GET', url: '/docs/json' }));
    const operations = Object.entries(docs.paths as Record<string, Record<string, Body>>)
      .filter(([path]) => path.startsWith('/api/pms/orders'))
      .flatMap(([path, methods]) => Object.entries(methods).map(([method, op]) => ({ path, method, op })));
    expect(operations).toHaveLength(7);
    for (const { path, method, op } of operations) {
      const text = JSON.stringify(op);
      expect(text, `${method} ${path}`).toContain('"example"');
      expect(op.tags, `${method} ${path}`).toEqual(['orders']);
    }
  });
});

describe('what the database holds', () => {
  const inTransaction = (sql: string, bindings: unknown[]) =>
    ctx.api.db.transaction((trx) => trx.raw(sql, bindings as never[]));
  const orderId = async (n: string) => (await ctx.api.db('orders').where({ order_number: n }).first('id')).id;

  it('refuses line quantities that do not add up, and returns beyond fulfilled', async () => {
    const id = await orderId('SO-RAW');
    await expect(
      inTransaction('update order_lines set fulfilled = fulfilled + 1 where order_id = ?', [id]),
    ).rejects.toThrow(/order_lines_quantities_add_up/);
    await expect(
      inTransaction('update order_lines set returned = 1 where order_id = ?', [id]),
    ).rejects.toThrow(/order_lines_returned_within_fulfilled/);
  });

  it('never lets the stored status drift from the lines', async () => {
    const id = await orderId('SO-RAW');
    const fulfilOne =
      'update order_lines set open_reserved = open_reserved - 1, fulfilled = fulfilled + 1 where order_id = ?';
    await expect(inTransaction(fulfilOne, [id])).rejects.toThrow(/an unconfirmed order has fulfilled units/);
    await inTransaction('update orders set confirmed_at = now() where id = ?', [id]);
    expect((await ctx.api.db('orders').where({ id }).first('status')).status).toBe('confirmed');
    // Consistent quantities, but the order row is not touched: refused at commit.
    await expect(inTransaction(fulfilOne, [id])).rejects.toThrow(
      /order SO-RAW is stored as confirmed but its lines say fulfilled/,
    );
    // Writing the status directly changes nothing: the trigger derives it.
    await inTransaction(`update orders set status = 'fulfilled' where id = ?`, [id]);
    expect((await ctx.api.db('orders').where({ id }).first('status')).status).toBe('confirmed');
    // Flags that contradict the lines are refused.
    await expect(inTransaction(`update orders set cancelled_at = now() where id = ?`, [id])).rejects.toThrow(
      /a cancelled order still holds units/,
    );
  });
});
