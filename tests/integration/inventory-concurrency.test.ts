import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, exitOf, json, type TestContext, waitForOutput } from '../helpers/context.js';

/**
 * No oversell: 1,000 concurrent single-unit reservations of a sku with 100 units, submitted
 * through the API and processed by two separate worker processes at concurrency 16 each.
 */
let ctx: TestContext;
const workers: ChildProcess[] = [];
const handled = new Map<ChildProcess, number>();

beforeAll(async () => {
  ctx = await createTestContext({ workers: ['products'] });
  for (let i = 0; i < 2; i++) {
    const child = ctx.spawnWorker(['--queues', 'inventory'], { WORKER_CONCURRENCY_INVENTORY: '16' });
    handled.set(child, 0);
    let partial = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop()!;
      const finished = lines.filter((l) => /"msg":"job (completed|failed a domain rule)"/.test(l)).length;
      handled.set(child, handled.get(child)! + finished);
    });
    workers.push(child);
  }
  await Promise.all(
    workers.map((w) => waitForOutput(w, /worker started.*inventory|inventory.*worker started/)),
  );
}, 60_000);

afterAll(async () => {
  for (const w of workers) w.kill('SIGTERM');
  await Promise.all(workers.map(exitOf));
  await ctx.close();
});

describe('reservations under contention', () => {
  it('1,000 concurrent reservations of 100 units: exactly 100 succeed, 900 fail insufficient_stock', async () => {
    const wait = { prefer: 'wait=20' };
    const product = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: wait,
      payload: { sku: 'HOT', name: 'Hot item', price: { amount: 100, currency: 'EUR' } },
    });
    expect(product.statusCode).toBe(201);
    const stocked = await ctx.request({
      method: 'POST',
      url: '/api/pms/inventory/adjust',
      headers: wait,
      payload: { movements: [{ sku: 'HOT', location: 'default', delta: 100, reason: 'received' }] },
    });
    expect(stocked.statusCode, stocked.body).toBe(200);

    const submitted = await Promise.all(
      Array.from({ length: 1000 }, (_, i) =>
        ctx.request({
          method: 'POST',
          url: '/api/pms/inventory/reservations',
          payload: { reference: `order-${i}`, lines: [{ sku: 'HOT', quantity: 1 }] },
        }),
      ),
    );
    expect(submitted.every((r) => r.statusCode === 202)).toBe(true);
    const ids = submitted.map((r) => json(r).id as string);
    expect(new Set(ids).size).toBe(1000);

    const outcomes = await Promise.all(ids.map((id) => ctx.waitForJob(id, 90_000)));
    const completed = outcomes.filter((o) => o.state === 'completed');
    const failed = outcomes.filter((o) => o.state === 'failed');
    expect(completed).toHaveLength(100);
    expect(failed).toHaveLength(900);
    const odd = failed.filter((o) => o.error?.code !== 'insufficient_stock' || o.attemptsMade !== 1);
    expect(odd.map((o) => [o.attemptsMade, o.error])).toEqual([]);
    expect(failed[0]!.error!.details).toMatchObject({
      lines: [{ index: 0, sku: 'HOT', requested: 1, available: 0 }],
    });

    const level = await ctx.api.db('inventory_levels').where({ sku: 'HOT', location: 'default' }).first();
    expect(level).toMatchObject({ on_hand: 100, reserved: 100 });
    const active = await ctx.api
      .db('reservations')
      .where({ status: 'active' })
      .count<{ n: number }[]>('* as n');
    expect(Number(active[0]!.n)).toBe(100);
    const reserveMoves = await ctx.api
      .db('stock_movements')
      .where({ kind: 'reserve' })
      .count<{ n: number }[]>('* as n');
    expect(Number(reserveMoves[0]!.n)).toBe(100);
    // Both worker processes took part.
    const perWorker = [...handled.values()];
    expect(perWorker.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(1000);
    expect(perWorker.every((n) => n > 0)).toBe(true);
  }, 120_000);

  it('locks levels in one global order: multi-line jobs touching the same skus in opposite orders never deadlock', async () => {
    const wait = { prefer: 'wait=20' };
    for (const sku of ['PAIR-A', 'PAIR-B']) {
      await ctx.request({
        method: 'POST',
        url: '/api/pms/products',
        headers: wait,
        payload: { sku, name: sku, price: { amount: 100, currency: 'EUR' } },
      });
    }
    await ctx.request({
      method: 'POST',
      url: '/api/pms/inventory/adjust',
      headers: wait,
      payload: {
        movements: [
          { sku: 'PAIR-A', location: 'default', delta: 1000, reason: 'received' },
          { sku: 'PAIR-B', location: 'default', delta: 1000, reason: 'received' },
        ],
      },
    });
    // Each job moves one unit from one sku to the other; half name A first, half B first.
    const submitted = await Promise.all(
      Array.from({ length: 400 }, (_, i) => {
        const [from, to] = i % 2 === 0 ? ['PAIR-A', 'PAIR-B'] : ['PAIR-B', 'PAIR-A'];
        return ctx.request({
          method: 'POST',
          url: '/api/pms/inventory/adjust',
          payload: {
            movements: [
              { sku: from, location: 'default', delta: -1, reason: 'correction' },
              { sku: to, location: 'default', delta: 1, reason: 'correction' },
            ],
          },
        });
      }),
    );
    const outcomes = await Promise.all(submitted.map((r) => ctx.waitForJob(json(r).id, 90_000)));
    // A deadlock would have failed an attempt (40P01) and retried it.
    expect(outcomes.filter((o) => o.state !== 'completed' || o.attemptsMade !== 1)).toEqual([]);
    const levels = await ctx.api.db('inventory_levels').whereIn('sku', ['PAIR-A', 'PAIR-B']).orderBy('sku');
    expect(levels.map((l) => l.on_hand)).toEqual([1000, 1000]);
  }, 120_000);
});
