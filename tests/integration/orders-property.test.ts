import fc from 'fast-check';
import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLocation } from '../../src/domain/locations.js';
import { cancelOrder, confirmOrder, createOrder, expireDue, fulfillOrder } from '../../src/domain/orders.js';
import { returnOrder } from '../../src/domain/orders-returns.js';
import { createProduct } from '../../src/domain/products.js';
import { describeDrift, findDrift } from '../../src/domain/reconcile.js';
import { adjustStock } from '../../src/domain/stock.js';
import { DomainError } from '../../src/errors/domain-error.js';
import { applyOnce } from '../../src/workers/group-commit.js';
import { createTestContext, type TestContext } from '../helpers/context.js';

/**
 * Random command sequences over many orders, applied the way a worker applies them (one
 * transaction per command through applyOnce), against a model of what must happen. After every
 * command: the outcome is the one the model predicts (or the error code it predicts), every
 * order's status and line quantities match the model, stock totals match, and ledger = levels.
 */

let ctx: TestContext;
let db: Knex;
beforeAll(async () => {
  ctx = await createTestContext();
  db = ctx.api.db;
  await run('setup', (trx) =>
    createLocation(trx, { code: 'north', name: 'North', priority: 10, active: true }),
  );
});
afterAll(() => ctx.close());

let jobSeq = 0;
/** One command = one job: its own transaction, claimed in applied_jobs, actor and job id set. */
function run<R>(name: string, apply: (trx: Knex.Transaction) => Promise<R>): Promise<R> {
  jobSeq += 1;
  return applyOnce(
    db,
    { id: `orders-prop-${jobSeq}`, queueName: 'orders', name },
    { actor: 'property' },
    apply,
  );
}

const skuCount = 3;
const orderCount = 4;
const stockPerLocation = 6;

type Cmd =
  | { kind: 'create'; order: number; lines: { sku: number; quantity: number }[] }
  | { kind: 'confirm' | 'cancel' | 'expire'; order: number }
  | { kind: 'fulfill'; order: number; lines: { sku: number; quantity: number }[] | null }
  | { kind: 'return'; order: number; sku: number; quantity: number; restock: boolean };

const order = fc.integer({ min: 0, max: orderCount - 1 });
const quantity = fc.integer({ min: 1, max: 5 });
const skuLines = fc.uniqueArray(fc.record({ sku: fc.integer({ min: 0, max: skuCount - 1 }), quantity }), {
  minLength: 1,
  maxLength: skuCount,
  selector: (l) => l.sku,
});
const command: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('create' as const), order, lines: skuLines }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('confirm' as const), order }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('fulfill' as const),
      order,
      lines: fc.option(skuLines, { freq: 2 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cancel' as const), order }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('expire' as const), order }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('return' as const),
      order,
      sku: fc.integer({ min: 0, max: skuCount - 1 }),
      quantity,
      restock: fc.boolean(),
    }),
  },
);

interface ModelLine {
  ordered: number;
  open: number;
  fulfilled: number;
  cancelled: number;
  returned: number;
}
interface ModelOrder {
  status: 'reserved' | 'confirmed' | 'partially_fulfilled' | 'fulfilled' | 'cancelled' | 'expired';
  version: number;
  lines: Map<number, ModelLine>;
}

/** The model: what each command must do, or the error code it must fail with. */
function expectedOutcome(
  orders: Map<number, ModelOrder>,
  stock: { onHand: number; reserved: number }[],
  cmd: Cmd,
): string {
  const o = orders.get(cmd.order);
  if (cmd.kind === 'create') {
    if (o) return 'order_number_taken';
    return cmd.lines.every((l) => l.quantity <= stock[l.sku]!.onHand - stock[l.sku]!.reserved)
      ? 'ok'
      : 'insufficient_stock';
  }
  if (!o) return 'not_found';
  const allowed: Record<string, ModelOrder['status'][]> = {
    confirm: ['reserved'],
    fulfill: ['confirmed', 'partially_fulfilled'],
    cancel: ['reserved', 'confirmed', 'partially_fulfilled'],
    return: ['partially_fulfilled', 'fulfilled', 'cancelled'],
    expire: ['reserved', 'confirmed', 'partially_fulfilled', 'fulfilled', 'cancelled', 'expired'],
  };
  if (!allowed[cmd.kind]!.includes(o.status)) return 'invalid_transition';
  if (cmd.kind === 'fulfill' && cmd.lines) {
    if (cmd.lines.some((l) => !o.lines.has(l.sku))) return 'not_found';
    if (cmd.lines.some((l) => l.quantity > o.lines.get(l.sku)!.open)) return 'insufficient_reserved';
  }
  if (cmd.kind === 'return') {
    const line = o.lines.get(cmd.sku);
    if (!line) return 'not_found';
    if (cmd.quantity > line.fulfilled - line.returned) return 'return_exceeds_fulfilled';
  }
  return 'ok';
}

function statusOf(o: ModelOrder, confirmed: boolean): ModelOrder['status'] {
  const lines = [...o.lines.values()];
  const fulfilled = lines.reduce((n, l) => n + l.fulfilled, 0);
  const open = lines.reduce((n, l) => n + l.open, 0);
  if (fulfilled > 0) return open === 0 ? 'fulfilled' : 'partially_fulfilled';
  return confirmed ? 'confirmed' : 'reserved';
}

/** Applies a successful command to the model. */
function applyToModel(
  orders: Map<number, ModelOrder>,
  stock: { onHand: number; reserved: number }[],
  cmd: Cmd,
): void {
  if (cmd.kind === 'create') {
    const lines = new Map<number, ModelLine>();
    for (const l of cmd.lines) {
      lines.set(l.sku, { ordered: l.quantity, open: l.quantity, fulfilled: 0, cancelled: 0, returned: 0 });
      stock[l.sku]!.reserved += l.quantity;
    }
    orders.set(cmd.order, { status: 'reserved', version: 1, lines });
    return;
  }
  const o = orders.get(cmd.order)!;
  const release = () => {
    for (const [sku, l] of o.lines) {
      stock[sku]!.reserved -= l.open;
      l.cancelled += l.open;
      l.open = 0;
    }
  };
  switch (cmd.kind) {
    case 'confirm':
      o.status = 'confirmed';
      break;
    case 'fulfill': {
      const wanted =
        cmd.lines ?? [...o.lines].map(([sku, l]) => ({ sku, quantity: l.open })).filter((l) => l.quantity);
      for (const w of wanted) {
        const l = o.lines.get(w.sku)!;
        l.open -= w.quantity;
        l.fulfilled += w.quantity;
        stock[w.sku]!.onHand -= w.quantity;
        stock[w.sku]!.reserved -= w.quantity;
      }
      o.status = statusOf(o, true);
      break;
    }
    case 'cancel':
      release();
      o.status = 'cancelled';
      break;
    case 'expire':
      if (o.status !== 'reserved') return; // only a reserved order's reservation expires
      release();
      o.status = 'expired';
      break;
    case 'return':
      o.lines.get(cmd.sku)!.returned += cmd.quantity;
      if (cmd.restock) stock[cmd.sku]!.onHand += cmd.quantity;
      break;
  }
  o.version += 1;
}

/** Points a fulfil's or a return's skus at the lines the order has, so most of them can succeed. */
function aimAtLines(orders: Map<number, ModelOrder>, cmd: Cmd): Cmd {
  const o = orders.get(cmd.order);
  if (!o) return cmd;
  const skus = [...o.lines.keys()];
  if (cmd.kind === 'return') return { ...cmd, sku: skus[cmd.sku % skus.length]! };
  if (cmd.kind === 'fulfill' && cmd.lines) {
    const aimed = new Map(cmd.lines.map((l) => [skus[l.sku % skus.length]!, l.quantity]));
    return { ...cmd, lines: [...aimed].map(([sku, quantity]) => ({ sku, quantity })) };
  }
  return cmd;
}

let runNo = 0;
const tally: Record<string, number> = {};

describe('orders under random command sequences', () => {
  // About 1,000 commands, each its own transaction and checks: give it time on a loaded machine.
  it('keep every invariant, match the model, and keep ledger = levels after every command', {
    timeout: 240_000,
  }, async () => {
    await fc.assert(
      // Every order is placed first (some fail for want of stock), some are paid, then the commands run.
      fc.asyncProperty(
        fc.array(skuLines, { minLength: orderCount, maxLength: orderCount }),
        fc.array(command, { minLength: 15, maxLength: 40 }),
        fc.array(fc.boolean(), { minLength: orderCount, maxLength: orderCount }),
        async (placed, rest, paid) => {
          const cmds: Cmd[] = [
            ...placed.map((lines, n) => ({ kind: 'create' as const, order: n, lines })),
            ...paid.flatMap((yes, n) => (yes ? [{ kind: 'confirm' as const, order: n }] : [])),
            ...rest,
          ];
          runNo += 1;
          const skus = Array.from({ length: skuCount }, (_, i) => `R${runNo}-S${i}`);
          const name = (n: number) => `R${runNo}-O${n}`;
          await run('setup', async (trx) => {
            for (const sku of skus) {
              await createProduct(trx, {
                sku,
                name: sku,
                price: { amount: 100, currency: 'EUR' },
                status: 'draft',
              });
            }
            return adjustStock(trx, {
              movements: skus.flatMap((sku) =>
                ['default', 'north'].map((location) => ({
                  sku,
                  location,
                  delta: stockPerLocation,
                  reason: 'received' as const,
                })),
              ),
            });
          });
          const orders = new Map<number, ModelOrder>();
          const stock = skus.map(() => ({ onHand: 2 * stockPerLocation, reserved: 0 }));

          for (const generated of cmds) {
            const cmd = aimAtLines(orders, generated);
            const expected = expectedOutcome(orders, stock, cmd);
            const orderNumber = name(cmd.order);
            let outcome = 'ok';
            try {
              await execute(cmd, orderNumber, skus);
            } catch (error) {
              if (!(error instanceof DomainError)) throw error;
              outcome = error.code;
            }
            expect(outcome, `${JSON.stringify(cmd)}`).toBe(expected);
            tally[`${cmd.kind}:${outcome}`] = (tally[`${cmd.kind}:${outcome}`] ?? 0) + 1;
            if (outcome === 'ok') applyToModel(orders, stock, cmd);
            await checkAgainstModel(orders, stock, skus, name);
          }
        },
      ),
      { numRuns: 40 },
    );
    // The sequences did reach every command's success path, not only its refusals.
    for (const kind of ['create', 'confirm', 'fulfill', 'cancel', 'return', 'expire']) {
      expect(tally[`${kind}:ok`] ?? 0, kind).toBeGreaterThan(3);
    }
  });
});

async function execute(cmd: Cmd, orderNumber: string, skus: string[]): Promise<void> {
  switch (cmd.kind) {
    case 'create':
      await run('order.create', (trx) =>
        createOrder(trx, {
          orderNumber,
          currency: 'EUR',
          lines: cmd.lines.map((l) => ({ sku: skus[l.sku]!, quantity: l.quantity, unitPrice: 100 })),
          holdSeconds: 3600,
        }),
      );
      return;
    case 'confirm':
      await run('order.confirm', (trx) => confirmOrder(trx, { orderNumber }));
      return;
    case 'cancel':
      await run('order.cancel', (trx) => cancelOrder(trx, { orderNumber }));
      return;
    case 'fulfill':
      await run('order.fulfill', (trx) =>
        fulfillOrder(trx, {
          orderNumber,
          lines: cmd.lines?.map((l) => ({ sku: skus[l.sku]!, quantity: l.quantity })),
        }),
      );
      return;
    case 'return':
      await run('order.return', (trx) =>
        returnOrder(trx, {
          orderNumber,
          lines: [{ sku: skus[cmd.sku]!, quantity: cmd.quantity }],
          restock: cmd.restock,
        }),
      );
      return;
    case 'expire': {
      const row = await db('orders').where({ order_number: orderNumber }).first('reservation_id');
      if (!row) throw new DomainError('not_found', 'no such order');
      // Its hold runs out now (a confirmed order's reservation has none, a closed one is not active).
      await db('reservations')
        .where({ id: row.reservation_id, status: 'active' })
        .whereNotNull('expires_at')
        .update({ expires_at: db.raw(`now() - interval '1 second'`) });
      await run('reservation.expire-due', (trx) => expireDue(trx, { limit: 100 }));
    }
  }
}

async function checkAgainstModel(
  orders: Map<number, ModelOrder>,
  stock: { onHand: number; reserved: number }[],
  skus: string[],
  name: (n: number) => string,
): Promise<void> {
  for (const [n, model] of orders) {
    const row = await db('orders')
      .where({ order_number: name(n) })
      .first('id', 'status', 'version');
    expect(row, name(n)).toMatchObject({ status: model.status, version: model.version });
    const lines = await db('order_lines').where({ order_id: row.id });
    for (const line of lines) {
      const m = model.lines.get(skus.indexOf(line.sku))!;
      expect(line).toMatchObject({
        ordered: m.ordered,
        open_reserved: m.open,
        fulfilled: m.fulfilled,
        cancelled: m.cancelled,
        returned: m.returned,
      });
    }
  }
  const levels = await db('inventory_levels')
    .whereIn('sku', skus)
    .groupBy('sku')
    .select('sku', db.raw('sum(on_hand)::bigint as on_hand, sum(reserved)::bigint as reserved'));
  for (const level of levels) {
    const m = stock[skus.indexOf(level.sku)]!;
    expect({ sku: level.sku, onHand: level.on_hand, reserved: level.reserved }).toEqual({
      sku: level.sku,
      onHand: m.onHand,
      reserved: m.reserved,
    });
  }
  const drift = await findDrift(db);
  expect(drift.map(describeDrift)).toEqual([]);
}
