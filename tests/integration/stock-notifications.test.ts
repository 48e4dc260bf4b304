import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkRule } from '../../src/domain/reorder-planner.js';
import { setRule } from '../../src/domain/reorder-rules.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext({ workers: ['products', 'inventory'] });
});
afterAll(() => ctx.close());

const wait = { prefer: 'wait=10' };
const notificationTypes = ['inventory.low_stock', 'inventory.out_of_stock', 'inventory.back_in_stock'];

async function post(
  url: string,
  payload: Record<string, unknown>,
): Promise<{ statusCode: number; body: Record<string, never> }> {
  const res = await ctx.request({ method: 'POST', url, headers: wait, payload });
  return { statusCode: res.statusCode, body: json(res) };
}
const adjust = (sku: string, delta: number) =>
  post('/api/pms/inventory/adjust', {
    movements: [{ sku, location: 'default', delta, reason: delta > 0 ? 'received' : 'damaged' }],
  });

/** A supplier row as the supplier route writes it (no supplier is called here). */
const insertSupplier = (code: string) =>
  ctx.api.db('suppliers').insert({
    code,
    name: 'Supplier',
    api_url: 'https://supplier.example.com/orders',
    api_key: ctx.api.secrets.seal('supplier-key', { column: 'suppliers.api_key', row: code }),
    lead_time_days: 2,
  });

async function notifications(sku: string) {
  return ctx.api
    .db('events')
    .where({ aggregate_id: sku })
    .whereIn('type', notificationTypes)
    .orderBy('seq')
    .select('type', 'data', 'job_id');
}

describe('stock notifications', () => {
  it('writes one event per change of state, in the transaction of what crossed', async () => {
    const sku = 'SN-1';
    expect(
      (await post('/api/pms/products', { sku, name: 'n', price: { amount: 1, currency: 'EUR' } })).statusCode,
    ).toBe(201);
    expect(
      (await post('/api/pms/inventory/safety-stock', { sku, location: 'default', safetyStock: 5 }))
        .statusCode,
    ).toBe(200);
    const steps: [string, () => Promise<{ statusCode: number; body: Record<string, never> }>][] = [
      ['receive 20 (available 15)', () => adjust(sku, 20)],
      ['lose 10 (available 5: at the threshold)', () => adjust(sku, -10)],
      ['lose 1 (available 4: still low)', () => adjust(sku, -1)],
      [
        'reserve 4 (available 0)',
        () => post('/api/pms/inventory/reservations', { reference: 'o-1', lines: [{ sku, quantity: 4 }] }),
      ],
      ['receive 2 (available 2)', () => adjust(sku, 2)],
      ['receive 10 (available 12)', () => adjust(sku, 10)],
      ['receive 1 (available 13)', () => adjust(sku, 1)],
      [
        'safety stock 18 (on hand 22, reserved 4: available 0)',
        () => post('/api/pms/inventory/safety-stock', { sku, location: 'default', safetyStock: 18 }),
      ],
    ];
    for (const [, step] of steps) expect((await step()).statusCode).toBeLessThan(300);

    const events = await notifications(sku);
    expect(
      events.map((e) => [e.type, e.data.previousState, e.data.state, e.data.available, e.data.cause]),
    ).toEqual([
      ['inventory.back_in_stock', 'out', 'in_stock', 15, 'movement'],
      ['inventory.low_stock', 'in_stock', 'low', 5, 'movement'],
      ['inventory.out_of_stock', 'low', 'out', 0, 'movement'],
      ['inventory.low_stock', 'out', 'low', 2, 'movement'],
      ['inventory.back_in_stock', 'low', 'in_stock', 12, 'movement'],
      ['inventory.out_of_stock', 'in_stock', 'out', 0, 'safety_stock'],
    ]);
    // Same transaction: the event carries its movement's id and job.
    for (const event of events.filter((e) => e.data.cause === 'movement')) {
      const movement = await ctx.api.db('stock_movements').where({ id: event.data.movementId }).first();
      expect(movement.job_id).toBe(event.job_id);
    }
    expect(events[0].data).toMatchObject({ sku, location: 'default', threshold: 5, onHand: 20, reserved: 0 });
    // Every notification's data matches its declared schema.
    const catalogue = json(await ctx.request({ method: 'GET', url: '/api/pms/events?after=0&limit=200' }));
    expect(catalogue.items.filter((e: { type: string }) => notificationTypes.includes(e.type))).toHaveLength(
      6,
    );
  });

  it("uses the reorder point of the level's reorder rule as its threshold, when it has one", async () => {
    const sku = 'SN-RULE';
    expect(
      (await post('/api/pms/products', { sku, name: 'n', price: { amount: 1, currency: 'EUR' } })).statusCode,
    ).toBe(201);
    expect((await adjust(sku, 30)).statusCode).toBe(200);
    // The rule as the reorder job writes it (the planner does not run here: no supplier is called).
    await insertSupplier('sn-supplier');
    await setRule(
      ctx.api.db,
      { sku, location: 'default', supplier: 'sn-supplier', reorderPoint: 12, reorderQuantity: 20 },
      { windowDays: 28 },
    );
    expect((await adjust(sku, -15)).statusCode).toBe(200); // available 15: above the point
    expect((await adjust(sku, -3)).statusCode).toBe(200); // available 12: at the point of 12
    const events = await notifications(sku);
    expect(events.map((e) => [e.type, e.data.available, e.data.threshold])).toEqual([
      ['inventory.back_in_stock', 30, 0],
      ['inventory.low_stock', 12, 12],
    ]);
  });

  it('uses the point the last check computed for an automatic rule, the safety stock before it', async () => {
    const sku = 'SN-AUTO';
    expect(
      (await post('/api/pms/products', { sku, name: 'n', price: { amount: 1, currency: 'EUR' } })).statusCode,
    ).toBe(201);
    expect(
      (await post('/api/pms/inventory/safety-stock', { sku, location: 'default', safetyStock: 2 }))
        .statusCode,
    ).toBe(200);
    expect((await adjust(sku, 60)).statusCode).toBe(200); // available 58
    // Demand for the automatic point: a sale of 20 (reserve, then commit); available 38.
    const reservation = await post('/api/pms/inventory/reservations', {
      reference: 'sn-auto',
      lines: [{ sku, quantity: 20 }],
    });
    expect(reservation.statusCode).toBe(201);
    expect((await post(`/api/pms/inventory/reservations/${reservation.body.id}/commit`, {})).statusCode).toBe(
      200,
    );
    await insertSupplier('sn-auto-supplier');
    const rule = await setRule(
      ctx.api.db,
      {
        sku,
        location: 'default',
        supplier: 'sn-auto-supplier',
        reorderPoint: 'auto',
        serviceLevel: 0.95,
        reorderQuantity: 20,
      },
      { windowDays: 28 },
    );
    // Before its first check an automatic rule has no point: the threshold is the safety stock.
    expect((await adjust(sku, -35)).statusCode).toBe(200); // available 3: above 2, no event
    expect((await adjust(sku, 35)).statusCode).toBe(200); // available 38
    const check = await checkRule(ctx.api.db, { ruleId: rule.id });
    expect(check.reorderPoint).toBeGreaterThan(3);
    expect(check.reorderPoint).toBeLessThan(38);
    expect((await adjust(sku, check.reorderPoint - 38)).statusCode).toBe(200); // available at the point
    const events = await notifications(sku);
    expect(events.map((e) => [e.type, e.data.available, e.data.threshold])).toEqual([
      ['inventory.back_in_stock', 58, 2],
      ['inventory.low_stock', check.reorderPoint, check.reorderPoint],
    ]);
  });

  it('writes each crossing once under concurrent movements on one level', async () => {
    const sku = 'SN-HOT';
    expect(
      (await post('/api/pms/products', { sku, name: 'n', price: { amount: 1, currency: 'EUR' } })).statusCode,
    ).toBe(201);
    expect(
      (await post('/api/pms/inventory/safety-stock', { sku, location: 'default', safetyStock: 4 }))
        .statusCode,
    ).toBe(200);
    expect((await adjust(sku, 9)).statusCode).toBe(200); // available 5: in stock; low at <= 4, out at 0
    // 240 concurrent jobs walking on hand up and down across both thresholds.
    const deltas = Array.from({ length: 240 }, (_, i) => (i % 2 === 0 ? -1 : 1) * (1 + (i % 3)));
    const handles = await Promise.all(
      deltas.map(async (delta) => {
        const res = await ctx.request({
          method: 'POST',
          url: '/api/pms/inventory/adjust',
          payload: { movements: [{ sku, location: 'default', delta, reason: 'correction' }] },
        });
        return json(res).id as string;
      }),
    );
    const finished = await Promise.all(handles.map((id) => ctx.waitForJob(id, 60_000)));
    expect(finished.filter((s) => s.state === 'completed').length).toBeGreaterThan(100);

    // The expected crossings, replayed from the ledger in the order the level lock applied them.
    const movements = await ctx.api.db('stock_movements').where({ sku }).orderBy('id');
    const stateOf = (m: { on_hand_after: number; reserved_after: number }) => {
      const available = Math.max(0, m.on_hand_after - m.reserved_after - 4);
      return available <= 0 ? 'out' : available <= 4 ? 'low' : 'in_stock';
    };
    const expected: [number, string][] = [];
    let previous = 'out';
    for (const m of movements) {
      const state = stateOf(m);
      if (state !== previous) expected.push([Number(m.id), state]);
      previous = state;
    }
    const events = await notifications(sku);
    expect(events.map((e) => [e.data.movementId, e.data.state])).toEqual(expected);
    expect(expected.length).toBeGreaterThan(4);
  }, 120_000);
});
