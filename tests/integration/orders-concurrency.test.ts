import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findDrift } from '../../src/domain/reconcile.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';

let ctx: TestContext;
beforeAll(async () => {
  // Several order jobs at once, so the 50 requests really race for the order's row lock.
  ctx = await createTestContext({
    workers: ['orders', 'inventory', 'products'],
    env: { WORKER_CONCURRENCY_ORDERS: '8' },
  });
  const wait = { prefer: 'wait=10' };
  for (const code of ['north', 'south']) {
    await ctx.request({
      method: 'POST',
      url: '/api/pms/locations',
      headers: wait,
      payload: { code, name: code },
    });
  }
  await ctx.request({
    method: 'POST',
    url: '/api/pms/products',
    headers: wait,
    payload: { sku: 'HOT', name: 'Hot', price: { amount: 100, currency: 'EUR' } },
  });
  await ctx.request({
    method: 'POST',
    url: '/api/pms/inventory/adjust',
    headers: wait,
    payload: {
      movements: [
        { sku: 'HOT', location: 'north', delta: 6, reason: 'received' },
        { sku: 'HOT', location: 'south', delta: 6, reason: 'received' },
      ],
    },
  });
});
afterAll(() => ctx.close());

async function placeConfirmed(orderNumber: string, quantity: number) {
  const placed = await ctx.request({
    method: 'POST',
    url: '/api/pms/orders',
    headers: { prefer: 'wait=10' },
    payload: { orderNumber, currency: 'EUR', lines: [{ sku: 'HOT', quantity, unitPrice: 100 }] },
  });
  expect(placed.statusCode, placed.body).toBe(201);
  const confirmed = await ctx.request({
    method: 'POST',
    url: `/api/pms/orders/${orderNumber}/confirm`,
    headers: { prefer: 'wait=10' },
  });
  expect(confirmed.statusCode, confirmed.body).toBe(200);
}

/** 50 identical fulfil requests at once, each with its own Idempotency-Key: 50 jobs. */
async function race(orderNumber: string, payload?: Record<string, unknown>) {
  const accepted = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      ctx.request({
        method: 'POST',
        url: `/api/pms/orders/${orderNumber}/fulfill`,
        headers: { 'idempotency-key': `${orderNumber}-${i}` },
        ...(payload ? { payload } : {}),
      }),
    ),
  );
  const ids = accepted.map((res) => {
    expect(res.statusCode, res.body).toBe(202);
    return json(res).id as string;
  });
  expect(new Set(ids).size).toBe(50);
  return Promise.all(ids.map((id) => ctx.waitForJob(id, 60_000)));
}

const commits = (orderNumber: string) =>
  ctx.api.db('stock_movements').where({ reference: orderNumber, kind: 'commit' }).select('location', 'delta');

describe('50 concurrent identical fulfil requests', () => {
  it('fulfil everything once (no lines): the others fail invalid_transition', async () => {
    await placeConfirmed('RACE-ALL', 8);
    const outcomes = await race('RACE-ALL');
    const completed = outcomes.filter((o) => o.state === 'completed');
    expect(completed).toHaveLength(1);
    const failures = outcomes.filter((o) => o.state === 'failed');
    expect(failures).toHaveLength(49);
    for (const failure of failures) {
      expect(failure.error).toMatchObject({
        code: 'invalid_transition',
        details: { currentStatus: 'fulfilled', allowedActions: ['return'] },
      });
      expect(failure.attemptsMade).toBe(1);
    }
    // Exactly the 8 units, committed at the locations the allocation chose (6 north, 2 south).
    expect((await commits('RACE-ALL')).map((m) => [m.location, m.delta]).sort()).toEqual([
      ['north', -6],
      ['south', -2],
    ]);
    const [line] = await ctx.api
      .db('order_lines')
      .join('orders', 'orders.id', 'order_lines.order_id')
      .where({ order_number: 'RACE-ALL' })
      .select('fulfilled', 'open_reserved', 'status');
    expect(line).toEqual({ fulfilled: 8, open_reserved: 0, status: 'fulfilled' });
    expect(await findDrift(ctx.api.db)).toEqual([]);
  });

  it('fulfil part of an order (3 of 4): the others fail insufficient_reserved or invalid_transition', async () => {
    await placeConfirmed('RACE-PART', 4);
    const outcomes = await race('RACE-PART', { lines: [{ sku: 'HOT', quantity: 3 }] });
    expect(outcomes.filter((o) => o.state === 'completed')).toHaveLength(1);
    const codes = outcomes.filter((o) => o.state === 'failed').map((o) => o.error!.code);
    expect(codes).toHaveLength(49);
    expect(codes.every((code) => code === 'insufficient_reserved')).toBe(true);
    const failure = outcomes.find((o) => o.state === 'failed')!;
    expect(failure.error!.details).toMatchObject({
      currentStatus: 'partially_fulfilled',
      lines: [{ sku: 'HOT', requested: 3, openReserved: 1 }],
    });
    expect((await commits('RACE-PART')).reduce((n, m) => n - m.delta, 0)).toBe(3);
    const levels = await ctx.api
      .db('inventory_levels')
      .where({ sku: 'HOT' })
      .select(ctx.api.db.raw('sum(on_hand)::bigint as "onHand", sum(reserved)::bigint as reserved'));
    expect(levels[0]).toEqual({ onHand: 12 - 8 - 3, reserved: 1 });
    expect(await findDrift(ctx.api.db)).toEqual([]);
  });
});
