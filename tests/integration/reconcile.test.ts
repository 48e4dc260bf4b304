import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findDrift } from '../../src/domain/reconcile.js';
import { createTestContext, repoRoot, type TestContext } from '../helpers/context.js';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext({ workers: ['products', 'inventory'] });
  const wait = { prefer: 'wait=10' };
  for (const sku of ['R1', 'R2']) {
    await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: wait,
      payload: { sku, name: sku, price: { amount: 100, currency: 'EUR' } },
    });
  }
  const adjusted = await ctx.request({
    method: 'POST',
    url: '/api/pms/inventory/adjust',
    headers: wait,
    payload: {
      movements: [
        { sku: 'R1', location: 'default', delta: 10, reason: 'received' },
        { sku: 'R2', location: 'default', delta: 10, reason: 'received' },
      ],
    },
  });
  expect(adjusted.statusCode).toBe(200);
  const reserved = await ctx.request({
    method: 'POST',
    url: '/api/pms/inventory/reservations',
    headers: wait,
    payload: { reference: 'o-1', lines: [{ sku: 'R2', quantity: 2 }] },
  });
  expect(reserved.statusCode).toBe(201);
});
afterAll(() => ctx.close());

function reconcile(args: string[] = []): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/reconcile.ts', ...args], {
      cwd: repoRoot,
      env: { ...process.env, ...ctx.env },
    });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    child.on('exit', (code) => resolve({ code, out }));
  });
}

/** What a bad manual fix or a restored backup does: change levels behind the ledger's back. */
async function tamper(sql: string, on: TestContext = ctx) {
  await on.api.db.transaction(async (trx) => {
    await trx.raw(`select set_config('stockflow.rebuild_levels', 'on', true)`);
    await trx.raw(sql);
  });
}

describe('npm run reconcile', () => {
  it('finds no drift on a consistent database', async () => {
    const { code, out } = await reconcile();
    expect(out).toMatch(/ledger = levels: no drift in \d+ level\(s\)/);
    expect(code).toBe(0);
  });

  it('prints drift (exit 1), and --fix repairs it through count movements with an audit note', async () => {
    await tamper(`update inventory_levels set on_hand = 13 where sku = 'R1' and location = 'default'`);
    await tamper(`update inventory_levels set reserved = 5 where sku = 'R2' and location = 'default'`);
    expect((await findDrift(ctx.api.db)).map((d) => d.sku)).toEqual(['R1', 'R2']);

    const check = await reconcile();
    expect(check.code).toBe(1);
    expect(check.out).toContain(
      'drift: R1 @ default: level on_hand 13 reserved 0; ledger on_hand 10 reserved 0',
    );
    expect(check.out).toContain('2 of');

    const fix = await reconcile(['--fix']);
    expect(fix.out).toContain('ledger = levels after the fix');
    expect(fix.code).toBe(0);
    expect(await findDrift(ctx.api.db)).toEqual([]);

    // R1 keeps the 13 it showed; the ledger now accounts for the 3 with a count movement.
    const r1 = await ctx.api.db('inventory_levels').where({ sku: 'R1', location: 'default' }).first();
    expect(r1).toMatchObject({ on_hand: 13, reserved: 0 });
    const count = await ctx.api.db('stock_movements').where({ sku: 'R1', kind: 'count' }).first();
    expect(count).toMatchObject({ delta: 3, on_hand_after: 13, reason: 'count', actor: 'reconcile' });
    expect(count.note).toMatch(/^reconcile: inventory_levels.on_hand was 13 but the ledger summed to 10/);
    // R2's reserved goes back to what its active reservation holds.
    const r2 = await ctx.api.db('inventory_levels').where({ sku: 'R2', location: 'default' }).first();
    expect(r2).toMatchObject({ on_hand: 10, reserved: 2 });
  });

  it('fails any test file that leaves drift behind: the check runs in every context close()', async () => {
    const other = await createTestContext();
    await other.api.db('products').insert({ sku: 'T1', name: 'T1', price_amount: 1, price_currency: 'EUR' });
    await tamper(`update inventory_levels set on_hand = 7 where sku = 'T1'`, other);
    await expect(other.close()).rejects.toThrow(
      /ledger drift in 1 level\(s\): T1 @ default: level on_hand 7/,
    );
  });
});
