import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, json, type TestContext } from '../helpers/context.js';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext({
    workers: ['inventory', 'products'],
    env: { RESERVATION_EXPIRY_INTERVAL_MS: '500' },
  });
  for (const sku of ['A', 'B', 'C', 'D', 'E']) {
    const res = await post('/api/pms/products', {
      sku,
      name: `Item ${sku}`,
      price: { amount: 100, currency: 'EUR' },
    });
    expect(res.statusCode).toBe(201);
  }
});
afterAll(() => ctx.close());

const wait = { prefer: 'wait=10' };
type Body = Record<string, unknown>;
const post = (url: string, payload?: Body) =>
  ctx.request({ method: 'POST', url, headers: wait, ...(payload === undefined ? {} : { payload }) });
const put = (url: string, payload: Body) => ctx.request({ method: 'PUT', url, headers: wait, payload });
const get = async (url: string) => {
  const res = await ctx.request({ method: 'GET', url });
  expect(res.statusCode, res.body).toBe(200);
  return json(res);
};
const level = (sku: string, location = 'default') =>
  ctx.api.db('inventory_levels').where({ sku, location }).first('on_hand', 'reserved', 'safety_stock');
const adjust = (movements: Record<string, unknown>[]) => post('/api/pms/inventory/adjust', { movements });

describe('stock movements', () => {
  it('adjusts stock through a job: movement, level and event in one transaction', async () => {
    const res = await adjust([
      { sku: 'A', location: 'default', delta: 50, reason: 'received', reference: 'po-1' },
    ]);
    expect(res.statusCode, res.body).toBe(200);
    const [movement] = json(res).movements;
    expect(movement).toMatchObject({
      kind: 'receipt',
      sku: 'A',
      location: 'default',
      delta: 50,
      onHandAfter: 50,
      reservedAfter: 0,
      reason: 'received',
      reference: 'po-1',
      actor: 'test-pms',
    });
    expect(movement.jobId).toMatch(/^inventory-/);
    expect(await level('A')).toMatchObject({ on_hand: 50, reserved: 0 });
    const events = await ctx.api.db('events').where({ type: 'stock.moved', aggregate_id: 'A' });
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ job_id: movement.jobId, actor: 'test-pms' });
    expect(events[0].data).toMatchObject({ movementId: movement.id, delta: 50, onHandAfter: 50 });
  });

  it('fails the whole job with insufficient_stock listing every offending line', async () => {
    await adjust([{ sku: 'B', location: 'default', delta: 5, reason: 'received' }]);
    const before = await ctx.api.db('stock_movements').count<{ count: number }[]>('* as count');
    const res = await adjust([
      { sku: 'A', location: 'default', delta: -10, reason: 'damaged' },
      { sku: 'B', location: 'default', delta: -6, reason: 'lost' },
      { sku: 'A', location: 'default', delta: -41, reason: 'correction' },
      { sku: 'C', location: 'default', delta: -1, reason: 'other' },
    ]);
    expect(res.statusCode).toBe(409);
    const body = json(res);
    expect(body.code).toBe('insufficient_stock');
    // Line 0 applies (50 -> 40), so line 2 (-41) is short against 40.
    expect(body.details.lines).toEqual([
      { index: 1, sku: 'B', location: 'default', delta: -6, onHand: 5, reserved: 0, available: 5 },
      { index: 2, sku: 'A', location: 'default', delta: -41, onHand: 40, reserved: 0, available: 40 },
      { index: 3, sku: 'C', location: 'default', delta: -1, onHand: 0, reserved: 0, available: 0 },
    ]);
    expect(await ctx.api.db('stock_movements').count<{ count: number }[]>('* as count')).toEqual(before);
    expect(await level('A')).toMatchObject({ on_hand: 50 });
  });

  it('fails unknown skus and locations with not_found, per line', async () => {
    const res = await adjust([
      { sku: 'A', location: 'default', delta: 1, reason: 'found' },
      { sku: 'NOPE', location: 'default', delta: 1, reason: 'found' },
      { sku: 'A', location: 'mars', delta: 1, reason: 'found' },
    ]);
    expect(res.statusCode).toBe(404);
    expect(json(res)).toMatchObject({
      code: 'not_found',
      details: {
        lines: [
          { index: 1, sku: 'NOPE', missing: ['sku'] },
          { index: 2, location: 'mars', missing: ['location'] },
        ],
      },
    });
    expect(await level('A')).toMatchObject({ on_hand: 50 });
  });

  it('compares and sets with expectedOnHand (stale_quantity names the current value)', async () => {
    const stale = await adjust([
      { sku: 'A', location: 'default', delta: 1, reason: 'found', expectedOnHand: 49 },
    ]);
    expect(stale.statusCode).toBe(409);
    expect(json(stale)).toMatchObject({
      code: 'stale_quantity',
      details: { lines: [{ index: 0, sku: 'A', expectedOnHand: 49, onHand: 50 }] },
    });
    const ok = await adjust([
      { sku: 'A', location: 'default', delta: 1, reason: 'found', expectedOnHand: 50 },
    ]);
    expect(ok.statusCode).toBe(200);
    expect(await level('A')).toMatchObject({ on_hand: 51 });
  });

  it('records a stock count as a count movement with the difference', async () => {
    const res = await post('/api/pms/inventory/set', {
      sku: 'A',
      location: 'default',
      onHand: 45,
      reason: 'count',
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(json(res).movement).toMatchObject({ kind: 'count', delta: -6, onHandAfter: 45, reason: 'count' });
    const stale = await post('/api/pms/inventory/set', {
      sku: 'A',
      location: 'default',
      onHand: 40,
      expectedOnHand: 3,
    });
    expect(json(stale)).toMatchObject({ code: 'stale_quantity', details: { lines: [{ onHand: 45 }] } });
  });

  it('manages locations: a new one gets a level for every product, PUT replaces, GET lists by priority', async () => {
    const created = await post('/api/pms/locations', { code: 'north', name: 'North', priority: 10 });
    expect(created.statusCode, created.body).toBe(201);
    expect(json(created)).toMatchObject({ code: 'north', priority: 10, active: true, version: 1 });
    expect(await level('A', 'north')).toMatchObject({ on_hand: 0 });
    const taken = await post('/api/pms/locations', { code: 'north', name: 'Again' });
    expect(json(taken)).toMatchObject({ status: 409, code: 'location_taken' });
    await post('/api/pms/locations', { code: 'south', name: 'South', priority: 20 });
    await post('/api/pms/locations', { code: 'west', name: 'West', priority: 30, active: false });
    const updated = await put('/api/pms/locations/west', { name: 'West wing', priority: 5, active: true });
    expect(json(updated)).toMatchObject({
      code: 'west',
      name: 'West wing',
      priority: 5,
      active: true,
      version: 2,
    });
    expect(await level('B', 'west')).toMatchObject({ on_hand: 0 });
    const missing = await put('/api/pms/locations/east', { name: 'East' });
    expect(missing.statusCode).toBe(404);
    const list = await get('/api/pms/locations');
    expect(list.items.map((l: { code: string }) => l.code)).toEqual(['west', 'north', 'south', 'default']);
  });

  it('transfers unreserved stock, both legs in one job', async () => {
    const res = await post('/api/pms/inventory/transfer', {
      sku: 'A',
      from: 'default',
      to: 'north',
      quantity: 15,
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(json(res).movements).toMatchObject([
      { kind: 'transfer_out', location: 'default', delta: -15, onHandAfter: 30 },
      { kind: 'transfer_in', location: 'north', delta: 15, onHandAfter: 15 },
    ]);
    const short = await post('/api/pms/inventory/transfer', {
      sku: 'A',
      from: 'north',
      to: 'south',
      quantity: 16,
    });
    expect(json(short)).toMatchObject({
      code: 'insufficient_stock',
      details: { lines: [{ location: 'north', quantity: 16, onHand: 15 }] },
    });
  });
});

describe('reservations', () => {
  it('reserves by priority: one location for every line when one can, and says why', async () => {
    // A: default 30, north 15. B: default 5. C: nothing yet.
    await adjust([
      { sku: 'C', location: 'south', delta: 10, reason: 'received' },
      { sku: 'C', location: 'default', delta: 10, reason: 'received' },
    ]);
    const res = await post('/api/pms/inventory/reservations', {
      reference: 'order-1',
      lines: [
        { sku: 'A', quantity: 4 },
        { sku: 'C', quantity: 2 },
      ],
    });
    expect(res.statusCode, res.body).toBe(201);
    const reservation = json(res);
    // north (priority 10) has A but no C; default is the first location holding both.
    expect(reservation).toMatchObject({
      reference: 'order-1',
      status: 'active',
      lines: [
        { line: 0, sku: 'A', location: 'default', quantity: 4, rule: 'single_location' },
        { line: 1, sku: 'C', location: 'default', quantity: 2, rule: 'single_location' },
      ],
    });
    expect(Date.parse(reservation.expiresAt) - Date.now()).toBeGreaterThan(890_000);
    expect(await level('A')).toMatchObject({ on_hand: 30, reserved: 4 });
    const read = await get(`/api/pms/inventory/reservations/${reservation.id}`);
    expect(read).toEqual(reservation);
    const events = await ctx.api.db('events').where({ aggregate_id: reservation.id });
    expect(events.map((e) => e.type)).toEqual(['reservation.created']);
  });

  it('uses the fewest locations when none serves all, and splits a line no location can serve', async () => {
    await adjust([
      { sku: 'D', location: 'north', delta: 3, reason: 'received' },
      { sku: 'D', location: 'south', delta: 3, reason: 'received' },
      { sku: 'E', location: 'south', delta: 5, reason: 'received' },
    ]);
    const fewest = await post('/api/pms/inventory/reservations', {
      reference: 'order-2',
      lines: [
        { sku: 'D', quantity: 2 },
        { sku: 'E', quantity: 5 },
        { sku: 'B', quantity: 1 },
      ],
    });
    expect(fewest.statusCode, fewest.body).toBe(201);
    // No location has D, E and B; {south, default} serves each whole (north+south+default would be 3).
    expect(json(fewest).lines).toEqual([
      { line: 0, sku: 'D', location: 'south', quantity: 2, rule: 'fewest_locations' },
      { line: 1, sku: 'E', location: 'south', quantity: 5, rule: 'fewest_locations' },
      { line: 2, sku: 'B', location: 'default', quantity: 1, rule: 'fewest_locations' },
    ]);
    const split = await post('/api/pms/inventory/reservations', {
      reference: 'order-3',
      lines: [{ sku: 'D', quantity: 4 }],
    });
    expect(json(split).lines).toEqual([
      { line: 0, sku: 'D', location: 'north', quantity: 3, rule: 'split' },
      { line: 0, sku: 'D', location: 'south', quantity: 1, rule: 'split' },
    ]);
  });

  it('sums the same sku over lines before checking, and honours explicit locations and safety stock', async () => {
    // B at default: on_hand 5, reserved 1 -> 4 available.
    const bundle = await post('/api/pms/inventory/reservations', {
      reference: 'bundle',
      lines: [
        { sku: 'B', quantity: 3 },
        { sku: 'B', quantity: 3 },
      ],
    });
    expect(bundle.statusCode).toBe(409);
    expect(json(bundle).details.lines).toEqual([
      { index: 0, sku: 'B', location: null, requested: 3, requestedTotal: 6, available: 4 },
      { index: 1, sku: 'B', location: null, requested: 3, requestedTotal: 6, available: 4 },
    ]);
    const safety = await post('/api/pms/inventory/safety-stock', {
      sku: 'B',
      location: 'default',
      safetyStock: 2,
    });
    expect(json(safety)).toMatchObject({ onHand: 5, reserved: 1, safetyStock: 2, available: 2 });
    const explicit = await post('/api/pms/inventory/reservations', {
      reference: 'explicit',
      lines: [{ sku: 'B', quantity: 3, location: 'default' }],
    });
    expect(json(explicit)).toMatchObject({
      code: 'insufficient_stock',
      details: { lines: [{ index: 0, location: 'default', requested: 3, available: 2 }] },
    });
    const ok = await post('/api/pms/inventory/reservations', {
      reference: 'explicit',
      lines: [{ sku: 'B', quantity: 2, location: 'default' }],
    });
    expect(json(ok).lines).toEqual([
      { line: 0, sku: 'B', location: 'default', quantity: 2, rule: 'explicit' },
    ]);
  });

  it('commits (on_hand and reserved fall), then refuses to release a committed reservation', async () => {
    await adjust([{ sku: 'E', location: 'default', delta: 10, reason: 'received' }]);
    const created = json(
      await post('/api/pms/inventory/reservations', {
        reference: 'order-9',
        lines: [{ sku: 'E', quantity: 4, location: 'default' }],
      }),
    );
    const committed = await post(`/api/pms/inventory/reservations/${created.id}/commit`);
    expect(committed.statusCode, committed.body).toBe(200);
    expect(json(committed)).toMatchObject({ status: 'committed', closedAt: expect.any(String) });
    expect(await level('E')).toMatchObject({ on_hand: 6, reserved: 0 });
    const sale = await ctx.api
      .db('stock_movements')
      .where({ reservation_id: created.id, kind: 'commit' })
      .first();
    expect(sale).toMatchObject({ delta: -4, on_hand_after: 6, reserved_after: 0, reason: 'sale' });

    const release = await post(`/api/pms/inventory/reservations/${created.id}/release`);
    expect(release.statusCode).toBe(409);
    expect(json(release)).toMatchObject({
      code: 'invalid_transition',
      details: { reservationId: created.id, currentState: 'committed', transition: 'release' },
    });
    const unknown = await post(
      '/api/pms/inventory/reservations/00000000-0000-4000-8000-000000000000/release',
    );
    expect(unknown.statusCode).toBe(404);
    const events = await ctx.api.db('events').where({ aggregate_id: created.id }).orderBy('seq');
    expect(events.map((e) => e.type)).toEqual(['reservation.created', 'reservation.committed']);
  });

  it('releases and extends; expired reservations free their stock and cannot be committed', async () => {
    const a = json(
      await post('/api/pms/inventory/reservations', { reference: 'r-a', lines: [{ sku: 'E', quantity: 1 }] }),
    );
    const released = await post(`/api/pms/inventory/reservations/${a.id}/release`);
    expect(json(released)).toMatchObject({ status: 'released' });

    const b = json(
      await post('/api/pms/inventory/reservations', {
        reference: 'r-b',
        lines: [{ sku: 'E', quantity: 2, location: 'default' }],
        ttlSeconds: 1,
      }),
    );
    const c = json(
      await post('/api/pms/inventory/reservations', {
        reference: 'r-c',
        lines: [{ sku: 'E', quantity: 1 }],
        ttlSeconds: 1,
      }),
    );
    const extended = await post(`/api/pms/inventory/reservations/${c.id}/extend`, { ttlSeconds: 600 });
    expect(extended.statusCode, extended.body).toBe(200);
    expect(Date.parse(json(extended).expiresAt) - Date.now()).toBeGreaterThan(590_000);
    expect(await level('E')).toMatchObject({ on_hand: 6, reserved: 3 });

    // The scheduler (every 500 ms here) expires b.
    const deadline = Date.now() + 10_000;
    while (
      (await get(`/api/pms/inventory/reservations/${b.id}`)).status === 'active' &&
      Date.now() < deadline
    ) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await get(`/api/pms/inventory/reservations/${b.id}`)).toMatchObject({ status: 'expired' });
    expect(await level('E')).toMatchObject({ on_hand: 6, reserved: 1 });
    const expiredEvent = await ctx.api
      .db('events')
      .where({ aggregate_id: b.id, type: 'reservation.expired' })
      .first();
    expect(expiredEvent.actor).toBe('system');
    const release = await ctx.api
      .db('stock_movements')
      .where({ reservation_id: b.id, kind: 'release' })
      .first();
    expect(release).toMatchObject({ delta: -2, reason: 'expired' });

    const typesOf = async (id: string) =>
      (await ctx.api.db('events').where({ aggregate_id: id }).orderBy('seq')).map((e) => e.type);
    expect(await typesOf(a.id)).toEqual(['reservation.created', 'reservation.released']);
    expect(await typesOf(c.id)).toEqual(['reservation.created', 'reservation.extended']);
    expect(await typesOf(b.id)).toEqual(['reservation.created', 'reservation.expired']);

    const commit = await post(`/api/pms/inventory/reservations/${b.id}/commit`);
    expect(json(commit)).toMatchObject({ code: 'invalid_transition', details: { currentState: 'expired' } });
    const extendExpired = await post(`/api/pms/inventory/reservations/${b.id}/extend`, { ttlSeconds: 60 });
    expect(json(extendExpired)).toMatchObject({
      code: 'invalid_transition',
      details: { currentState: 'expired' },
    });
  });
});

describe('reads', () => {
  it('answers status per sku with totals and locations, listing unknown skus apart', async () => {
    const status = await get('/api/pms/inventory/status?sku=A,NOPE,B');
    expect(status.notFound).toEqual(['NOPE']);
    expect(status.items.map((i: { sku: string }) => i.sku)).toEqual(['A', 'B']);
    const a = status.items[0];
    expect(a.totals).toMatchObject({ onHand: 45, reserved: 4, available: 41 });
    expect(a.locations.map((l: { location: string }) => l.location)).toEqual([
      'west',
      'north',
      'south',
      'default',
    ]);
    const one = await get('/api/pms/inventory/status?sku=A&location=north');
    expect(one.items[0].locations).toEqual([expect.objectContaining({ location: 'north', onHand: 15 })]);
    const bad = await ctx.request({
      method: 'GET',
      url: `/api/pms/inventory/status?sku=${Array(101).fill('x').join(',')}`,
    });
    expect(bad.statusCode).toBe(400);
  });

  it('pages through the ledger newest first and filters it', async () => {
    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const page: { items: { id: number; sku: string }[]; nextCursor: string | null } = await get(
        `/api/pms/inventory/history?sku=A&limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      );
      expect(page.items.every((m) => m.sku === 'A')).toBe(true);
      seen.push(...page.items.map((m) => m.id));
      cursor = page.nextCursor;
    } while (cursor);
    const all = await ctx.api.db('stock_movements').where({ sku: 'A' }).orderBy('id', 'desc').pluck('id');
    expect(seen).toEqual(all);
    const counts = await get('/api/pms/inventory/history?kind=count');
    expect(counts.items.every((m: { kind: string }) => m.kind === 'count')).toBe(true);
  });

  it('recomputes a past moment from the ledger', async () => {
    const first = await ctx.api.db('stock_movements').where({ sku: 'A' }).orderBy('id').first();
    // created_at has microseconds; the first millisecond after it includes that movement only.
    const at = new Date(first.created_at.getTime() + 1).toISOString();
    const asOf = await get(`/api/pms/inventory/as-of?sku=A&at=${encodeURIComponent(at)}`);
    expect(asOf.items[0].totals).toMatchObject({ onHand: 50, reserved: 0 });
    const now = await get(
      `/api/pms/inventory/as-of?sku=A&at=${encodeURIComponent(new Date().toISOString())}`,
    );
    const status = await get('/api/pms/inventory/status?sku=A');
    expect(now.items[0].totals).toEqual(status.items[0].totals);
  });
});

describe('OpenAPI', () => {
  it('documents the inventory and location routes', async () => {
    const res = await ctx.request({ method: 'GET', url: '/docs/json' });
    expect(res.statusCode).toBe(200);
    const paths = Object.keys(json(res).paths);
    expect(paths).toEqual(
      expect.arrayContaining([
        '/api/pms/inventory/adjust',
        '/api/pms/inventory/reservations/{id}/commit',
        '/api/pms/inventory/status',
        '/api/pms/locations/{code}',
      ]),
    );
  });
});

describe('guards in the database', () => {
  it('refuses UPDATE, DELETE and TRUNCATE on the ledger', async () => {
    await expect(ctx.api.db.raw('update stock_movements set delta = 1000')).rejects.toThrow(/append-only/);
    await expect(ctx.api.db.raw('delete from stock_movements')).rejects.toThrow(/append-only/);
    await expect(ctx.api.db.raw('truncate stock_movements')).rejects.toThrow(/append-only/);
  });

  it('refuses a level that bypasses the ledger, and a movement that would make on_hand negative', async () => {
    await expect(ctx.api.db.raw(`update inventory_levels set on_hand = -1 where sku = 'A'`)).rejects.toThrow(
      /only through stock_movements/,
    );
    await expect(ctx.api.db.raw(`update inventory_levels set on_hand = on_hand + 1`)).rejects.toThrow(
      /only through stock_movements/,
    );
    await expect(
      ctx.api.db.raw(
        `insert into stock_movements (kind, sku, location, delta, reason, on_hand_after, reserved_after)
         values ('adjustment', 'A', 'default', -1000, 'correction', 0, 0)`,
      ),
    ).rejects.toMatchObject({ code: '23514', constraint: 'inventory_levels_on_hand_non_negative' });
    await expect(
      ctx.api.db.raw(
        `insert into stock_movements (kind, sku, location, delta, reason, on_hand_after, reserved_after)
         values ('reserve', 'A', 'default', 1000, 'reservation', 0, 0)`,
      ),
    ).rejects.toMatchObject({ code: '23514', constraint: 'inventory_levels_reserved_within_on_hand' });
  });
});

describe('bad input', () => {
  it('answers 400 with every field error and enqueues nothing', async () => {
    // The reservation expiry scheduler runs every 500 ms here: count every other job.
    const jobsNow = async () =>
      (await ctx.api.queues.inventory.getJobs(['waiting', 'active', 'completed', 'failed', 'prioritized']))
        .filter((j) => j.name !== 'reservation.expire-due')
        .map((j) => j.id)
        .sort();
    const before = await jobsNow();
    const lines = [
      { sku: 'A', location: 'default', delta: 0, reason: 'received' },
      { sku: 'A', location: 'default', delta: 1.5, reason: 'received' },
      { sku: 'A', location: 'default', delta: 1, reason: 'stolen' },
      { sku: 'A', location: 'default', delta: 3, reason: 'damaged' },
    ];
    const res = await ctx.request({
      method: 'POST',
      url: '/api/pms/inventory/adjust',
      payload: { movements: lines },
    });
    expect(res.statusCode).toBe(400);
    const paths = json(res).errors.map((e: { path: string }) => e.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'movements.0.delta',
        'movements.1.delta',
        'movements.2.reason',
        'movements.3.delta',
      ]),
    );

    const tooMany = Array.from({ length: 1001 }, () => ({
      sku: 'A',
      location: 'default',
      delta: 1,
      reason: 'found',
    }));
    const big = await ctx.request({
      method: 'POST',
      url: '/api/pms/inventory/adjust',
      payload: { movements: tooMany },
    });
    expect(big.statusCode).toBe(400);
    expect(json(big).errors).toEqual([
      expect.objectContaining({ path: 'movements', message: 'at most 1000 lines' }),
    ]);

    const reserve = await ctx.request({
      method: 'POST',
      url: '/api/pms/inventory/reservations',
      payload: {
        reference: 'x',
        lines: [
          { sku: 'A', quantity: -1 },
          { sku: 'A', quantity: 0 },
        ],
        ttlSeconds: 604_801,
      },
    });
    expect(reserve.statusCode).toBe(400);
    expect(json(reserve).errors.map((e: { path: string }) => e.path)).toEqual(
      expect.arrayContaining(['lines.0.quantity', 'lines.1.quantity', 'ttlSeconds']),
    );
    const zeroTtl = await ctx.request({
      method: 'POST',
      url: '/api/pms/inventory/reservations',
      payload: { reference: 'x', lines: [{ sku: 'A', quantity: 1 }], ttlSeconds: 0 },
    });
    expect(json(zeroTtl).errors).toEqual([expect.objectContaining({ path: 'ttlSeconds' })]);
    const transfer = await ctx.request({
      method: 'POST',
      url: '/api/pms/inventory/transfer',
      payload: { sku: 'A', from: 'default', to: 'default', quantity: -2 },
    });
    expect(json(transfer).errors.map((e: { path: string }) => e.path)).toEqual(
      expect.arrayContaining(['quantity']),
    );
    expect(await jobsNow()).toEqual(before);
  });
});
