import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { purchaseOrderTransitions } from '../../src/domain/purchase-orders.js';
import { followUpJob } from '../../src/queues/follow-ups.js';
import { reorderJobs } from '../../src/queues/reorder.js';
import { purchaseOrderStatuses } from '../../src/schemas/purchase-orders.js';
import { generateSecretsKey } from '../../src/secrets.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { expectIncomingMatchesLines, reorderApi, until } from '../helpers/reorder.js';

/**
 * The planner, with drafts kept as drafts (sending waits an hour here) and the address guard on:
 * the rule's one draft line, burst collapse, skips, the auto reorder point, and the database guards.
 */
let ctx: TestContext;
let api: ReturnType<typeof reorderApi>;
const supplierUrl = 'https://supplier.example/purchase-orders';

beforeAll(async () => {
  ctx = await createTestContext({
    workers: true,
    env: {
      SECRETS_KEY: generateSecretsKey(),
      REORDER_SCAN_INTERVAL_MS: '100',
      REORDER_SEND_DELAY_MS: '3600000',
    },
  });
  api = reorderApi(ctx);
  await api.supplier({ code: 'main', apiUrl: supplierUrl, minOrderQuantity: 1, orderMultiple: 1 });
});
afterAll(async () => {
  await expectIncomingMatchesLines(ctx);
  await ctx.close();
});

const runCheck = async (ruleId: number, cause: string) => {
  const job = followUpJob(ctx.config, { kind: 'check', payload: { ruleId }, key: cause });
  await ctx.api.queues.reorder.add(job.name, job.data, job.opts);
  const status = await ctx.waitForJob(job.opts.jobId!);
  expect(status.state, JSON.stringify(status.error)).toBe('completed');
  return status.result as { outcome: string; quantity?: number; purchaseOrderId?: string; reason?: string };
};
const lastCheck = async (ruleId: number) =>
  ctx.api.db('reorder_rule_checks').where({ rule_id: ruleId }).first();
const ruleView = async (sku: string) =>
  json(await ctx.request({ method: 'GET', url: `/api/pms/inventory/reorder-rules?sku=${sku}` })).items[0];

describe('the rule’s one draft line', () => {
  it('ten planner runs with no demand change leave exactly one line with an unchanged quantity', async () => {
    await api.product('TEN', 5);
    const rule = await api.rule({ sku: 'TEN', supplier: 'main', reorderPoint: 10, maxLevel: 40 });
    // The rule is due at once (5 ≤ 10): its own check opens the draft: 40 − (5 + 0) = 35.
    const [first] = await until(async () => {
      const lines = await api.lines('TEN');
      return lines.length > 0 ? lines : undefined;
    });
    expect(first).toMatchObject({
      quantity: 35,
      po_status: 'draft',
      outstanding: 35,
      available: 5,
      incoming: 0,
    });
    expect(await api.level('TEN')).toMatchObject({ incoming: 35 });

    for (let run = 1; run <= 10; run += 1) {
      expect(await runCheck(rule.id, `ten-${run}`)).toMatchObject({ outcome: 'unchanged', quantity: 35 });
    }
    // Ten more at once: row lock on the rule, and the unique index behind it.
    const concurrent = await Promise.all(
      Array.from({ length: 10 }, (_, i) => runCheck(rule.id, `ten-burst-${i}`)),
    );
    expect(new Set(concurrent.map((r) => r.outcome))).toEqual(new Set(['unchanged']));
    const lines = await api.lines('TEN');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ quantity: 35, updated_at: first.updated_at });
    expect(await api.level('TEN')).toMatchObject({ incoming: 35 });
    const events = await ctx.api
      .db('events')
      .where({ aggregate_type: 'purchase_order', aggregate_id: first.purchase_order_id });
    expect(events.map((e) => e.type)).toEqual(['purchase_order.created']);

    // A movement that leaves available + incoming above the point changes nothing (the draft counts as incoming).
    await api.adjust('TEN', -3);
    const moved = await ctx.api
      .db('events')
      .where({ type: 'stock.moved', aggregate_id: 'TEN' })
      .max('seq as seq')
      .first();
    await until(async () => {
      const cursor = await ctx.api.db('outbox_cursors').where({ name: 'reorder' }).first('position');
      return cursor.position >= moved!.seq;
    });
    expect(await ruleView('TEN')).toMatchObject({
      stock: { available: 2, incoming: 35, position: 37 },
      due: false,
    });
    // A changed rule is checked again: the same line is recomputed (40 → 50: 50 − 2 = 48), never added to.
    await api.rule({ sku: 'TEN', supplier: 'main', reorderPoint: 10, maxLevel: 50 });
    await until(async () => (await api.lines('TEN'))[0]?.quantity === 48);
    expect(await api.lines('TEN')).toHaveLength(1);
    expect(await api.level('TEN')).toMatchObject({ on_hand: 2, incoming: 48 });
    expect(await lastCheck(rule.id)).toMatchObject({ outcome: 'updated', reorder_point: 10, position: 2 });
    const po = await api.purchaseOrder(first.purchase_order_id);
    expect(po.lines[0].explanation).toMatchObject({
      available: 2,
      incoming: 0,
      maxLevel: 50,
      rawQuantity: 48,
      quantity: 48,
    });
    const types = await ctx.api
      .db('events')
      .where({ aggregate_type: 'purchase_order', aggregate_id: first.purchase_order_id })
      .pluck('type');
    expect(types).toEqual(['purchase_order.created', 'purchase_order.updated']);

    // The database refuses a second draft line for the rule, whatever the code does.
    const second = ctx.api.db.transaction(async (trx) => {
      await trx('suppliers').insert({
        code: 'other',
        name: 'O',
        api_url: supplierUrl,
        api_key: 'x',
        lead_time_days: 1,
      });
      const [order] = await trx('purchase_orders')
        .insert({ supplier_code: 'other', location: 'default' })
        .returning('id');
      const { outstanding: _, ...copy } = first;
      await trx('purchase_order_lines').insert({ ...copy, purchase_order_id: order.id });
    });
    await expect(second).rejects.toThrow(/purchase_order_lines_one_draft_per_rule/);
  });

  it('a burst of movements read in one scan gives one check per rule', async () => {
    await api.product('BURST', 100);
    const rule = await api.rule({ sku: 'BURST', supplier: 'main', reorderPoint: 90, reorderQuantity: 50 });
    await until(async () => (await lastCheck(rule.id))?.outcome === 'above_point');
    // The scan reads a level's figures as they are when it runs: a scan of the set-up movement
    // that came only after the burst would find the rule due and queue a check of its own.
    await api.scanned();
    // 20 movements committed together.
    await api.call('POST', '/api/pms/inventory/adjust', {
      movements: Array.from({ length: 20 }, () => ({
        sku: 'BURST',
        location: 'default',
        delta: -1,
        reason: 'damaged',
      })),
    });
    await until(async () => (await api.lines('BURST')).length === 1);
    const jobs = await ctx.api.queues.reorder.getJobs([
      'completed',
      'active',
      'waiting',
      'delayed',
      'failed',
    ]);
    const checks = jobs.filter((j) => j.name === reorderJobs.check.name && j.data.payload.ruleId === rule.id);
    // One from the rule's own set, and one per scan that read the burst: 20 movements, not 20
    // checks. A scan reads up to the stable horizon, and a horizon proven while the burst's insert
    // was drawing its seqs falls inside it (events/horizon.ts): the burst is then read by two
    // scans, and their two checks find the same need (one line of 50, below).
    expect(checks.length).toBeGreaterThanOrEqual(2);
    expect(checks.length).toBeLessThanOrEqual(3);
    expect((await api.lines('BURST'))[0]).toMatchObject({ quantity: 50, basis: 'reorder_quantity' });
  });
});

describe('a rule that cannot order', () => {
  it('records why and writes reorder.skipped; activating the supplier orders', async () => {
    await api.supplier({ code: 'asleep', apiUrl: supplierUrl, active: false });
    await api.product('SKIP', 2);
    const rule = await api.rule({ sku: 'SKIP', supplier: 'asleep', reorderPoint: 5, reorderQuantity: 20 });
    await until(async () => (await lastCheck(rule.id))?.outcome === 'skipped');
    expect(await lastCheck(rule.id)).toMatchObject({
      skip_reason: 'supplier_inactive',
      reorder_point: 5,
      position: 2,
    });
    const skipped = await ctx.api
      .db('events')
      .where({ type: 'reorder.skipped', aggregate_id: String(rule.id) })
      .first();
    expect(skipped.data).toMatchObject({
      ruleId: rule.id,
      sku: 'SKIP',
      supplier: 'asleep',
      reason: 'supplier_inactive',
      position: 2,
    });
    expect(await ruleView('SKIP')).toMatchObject({
      due: true,
      lastCheck: { outcome: 'skipped', reason: 'supplier_inactive' },
    });
    expect(await api.lines('SKIP')).toHaveLength(0);

    await api.call('PUT', '/api/pms/suppliers/asleep', {
      name: 'Awake',
      apiUrl: supplierUrl,
      leadTimeDays: 3,
      active: true,
    });
    await until(async () => (await api.lines('SKIP')).length === 1);
    // Ordered by the supplier's check (a scan queued before may run after it and find it unchanged).
    expect(['ordered', 'unchanged']).toContain((await lastCheck(rule.id)).outcome);
    expect(await lastCheck(rule.id)).toMatchObject({ skip_reason: null });
  });

  it('skips an archived product', async () => {
    await api.product('GONE', 1);
    const rule = await api.rule({ sku: 'GONE', supplier: 'main', reorderPoint: 0, reorderQuantity: 5 });
    await until(async () => (await lastCheck(rule.id))?.outcome === 'above_point');
    await ctx.request({ method: 'DELETE', url: '/api/pms/products/GONE', headers: { prefer: 'wait=10' } });
    await api.adjust('GONE', -1);
    await until(async () => (await lastCheck(rule.id))?.outcome === 'skipped');
    expect(await lastCheck(rule.id)).toMatchObject({ skip_reason: 'product_archived' });
  });

  it('refuses a rule naming an unknown sku, location or supplier (not_found) and bad input at intake', async () => {
    const res = await ctx.request({
      method: 'PUT',
      url: '/api/pms/inventory/reorder-rules',
      headers: { prefer: 'wait=10' },
      payload: { sku: 'NOPE', location: 'default', supplier: 'main', reorderPoint: 1, reorderQuantity: 1 },
    });
    expect(res.statusCode).toBe(404);
    expect(json(res)).toMatchObject({
      code: 'not_found',
      details: { lines: [{ sku: 'NOPE', missing: ['sku'] }] },
    });
    await api.product('RULE-ERR');
    const supplier = await ctx.request({
      method: 'PUT',
      url: '/api/pms/inventory/reorder-rules',
      headers: { prefer: 'wait=10' },
      payload: {
        sku: 'RULE-ERR',
        location: 'default',
        supplier: 'nobody',
        reorderPoint: 1,
        reorderQuantity: 1,
      },
    });
    expect(json(supplier)).toMatchObject({ code: 'not_found', details: { supplier: 'nobody' } });
    const invalid = await ctx.request({
      method: 'PUT',
      url: '/api/pms/inventory/reorder-rules',
      payload: { sku: 'RULE-ERR', location: 'default', supplier: 'main', reorderPoint: 'auto', maxLevel: 0 },
    });
    expect(invalid.statusCode).toBe(400);
    expect(
      json(invalid)
        .errors.map((e: { path: string }) => e.path)
        .sort(),
    ).toEqual(['maxLevel', 'serviceLevel']);
  });
});

describe('the auto reorder point', () => {
  it('matches a hand computation over a seeded sales history', async () => {
    await api.supplier({ code: 'four-days', apiUrl: supplierUrl, leadTimeDays: 4 });
    await api.product('AUTO', 210);
    // Sales history: day i is the 24 hours ending i days ago. The ledger stamps every row with
    // now(), so the past is written with triggers off and the level lowered by the same sum
    // (ledger = levels still holds).
    const history = [4, 5, 7, 3, 5, 6, 4, 5, 6, 5, 4, 7, 6, 3, 5, 4, 6, 5, 5, 4, 6, 5, 4, 7, 5, 4, 3, 6];
    await ctx.api.db.transaction(async (trx) => {
      await trx.raw(`set local session_replication_role = replica`);
      const rows = history.map((units, day) => ({ units, hoursAgo: day * 24 + 12 }));
      rows.push({ units: 50, hoursAgo: 30 * 24 }); // before the window: does not count
      for (const row of rows) {
        await trx.raw(
          `insert into stock_movements (kind, sku, location, delta, on_hand_after, reserved_after, reason, created_at)
           values ('sale', 'AUTO', 'default', ?, 0, 0, 'sale', now() - make_interval(hours => ?))`,
          [-row.units, row.hoursAgo],
        );
      }
      const total = rows.reduce((sum, r) => sum + r.units, 0);
      await trx.raw(
        `update inventory_levels set on_hand = on_hand - ? where sku = 'AUTO' and location = 'default'`,
        [total],
      );
    });
    // Today: a sale of 2 through a reservation commit (counts), damage of 1 (an adjustment: does not).
    await api.sell('AUTO', 2);
    await api.adjust('AUTO', -1);
    expect(await api.level('AUTO')).toMatchObject({ on_hand: 210 - 189 - 2 - 1 });

    // By hand, daily demand d = history with day 0 raised by today's 2: 6,5,7,3,5,6,4,…,6 (28 days).
    //   values: 3 three times, 4 six times, 5 nine times, 6 seven times, 7 three times
    //   Σd  = 9 + 24 + 45 + 42 + 21 = 141            mean = 141 / 28 = 5.035714285714…
    //   Σd² = 27 + 96 + 225 + 252 + 147 = 747
    //   Σ(d − mean)² = 747 − 141² / 28 = 747 − 710.035714… = 36.964285714…
    //   σ (sample, n − 1) = √(36.964285714 / 27) = √1.369047619 = 1.170063083
    //   z(0.95) = 1.644853627 (normal quantile)       lead time L = 4 days, √L = 2
    //   mean × L = 20.142857143                       z × σ × √L = 1.644853627 × 1.170063083 × 2 = 3.849165013
    //   point = 20.142857143 + 3.849165013 = 23.992022156 → rounded up to 24 units
    const rule = await api.rule({
      sku: 'AUTO',
      supplier: 'four-days',
      reorderPoint: 'auto',
      serviceLevel: 0.95,
      maxLevel: 60,
    });
    expect(rule.point.demandTotal).toBe(141);
    expect(rule.point.windowDays).toBe(28);
    expect(rule.point.meanDailyDemand).toBeCloseTo(5.035714285714, 9);
    expect(rule.point.stdDevDailyDemand).toBeCloseTo(1.170063083, 8);
    expect(rule.point.z).toBeCloseTo(1.644853627, 8);
    expect(rule.point.leadTimeDemand).toBeCloseTo(20.142857143, 8);
    expect(rule.point.safetyBuffer).toBeCloseTo(3.849165013, 8);
    expect(rule.point.exact).toBeCloseTo(23.992022156, 8);
    expect(rule.point.point).toBe(24);
    expect(rule).toMatchObject({
      reorderPoint: 'auto',
      serviceLevel: 0.95,
      stock: { onHand: 18, available: 18 },
      due: true,
    });

    // The planner ordered against that point: 60 − (18 + 0) = 42.
    const [line] = await until(async () => {
      const lines = await api.lines('AUTO');
      return lines.length > 0 ? lines : undefined;
    });
    expect(line).toMatchObject({ reorder_point: 24, available: 18, raw_quantity: 42, quantity: 42 });
  });
});

describe('database guards', () => {
  it('incoming changes only through purchase order lines', async () => {
    await api.product('GUARD');
    await expect(
      ctx.api.db('inventory_levels').where({ sku: 'GUARD', location: 'default' }).update({ incoming: 5 }),
    ).rejects.toThrow(/incoming changes only through purchase_order_lines/);
  });

  it('the database refuses exactly the transitions the table refuses', async () => {
    await api.supplier({ code: 'transitions', apiUrl: supplierUrl });
    for (const from of purchaseOrderStatuses) {
      for (const to of purchaseOrderStatuses) {
        if (from === to) continue;
        const allowed = await ctx.api.db
          .transaction(async (trx) => {
            await trx.raw(`set local session_replication_role = replica`);
            const { rows } = await trx.raw(
              `insert into purchase_orders (supplier_code, location, status) values ('transitions', 'default', ?) returning id`,
              [from],
            );
            await trx.raw(`set local session_replication_role = origin`);
            await trx('purchase_orders').where({ id: rows[0].id }).update({ status: to });
            throw new Error('rollback');
          })
          .catch((error: Error) => error.message === 'rollback');
        expect(allowed, `${from} → ${to}`).toBe(purchaseOrderTransitions[from].includes(to));
      }
    }
  });

  it('refuses private supplier URLs at registration, and again when sending', async () => {
    for (const apiUrl of [
      'http://127.0.0.1:4010/po',
      'http://localhost/po',
      'http://169.254.169.254/latest',
      'http://[::1]/po',
      'http://10.0.0.8/po',
    ]) {
      const res = await ctx.request({
        method: 'POST',
        url: '/api/pms/suppliers',
        key: ctx.adminKey,
        payload: { code: 'private', name: 'P', apiUrl, apiKey: 'abcdefgh', leadTimeDays: 1 },
      });
      expect(res.statusCode, apiUrl).toBe(422);
      expect(json(res)).toMatchObject({ code: 'unsafe_supplier_url', errors: [{ path: 'apiUrl' }] });
    }
    expect(await ctx.api.db('suppliers').where({ code: 'private' }).first()).toBeUndefined();

    // A supplier whose URL points inside (registered while that was allowed): the send refuses to connect.
    await api.supplier({ code: 'inside', apiUrl: supplierUrl });
    await ctx.api.db('suppliers').where({ code: 'inside' }).update({ api_url: 'http://127.0.0.1:9/po' });
    await api.product('INSIDE', 1);
    await api.rule({ sku: 'INSIDE', supplier: 'inside', reorderPoint: 1, reorderQuantity: 5 });
    const [line] = await until(async () => {
      const lines = await api.lines('INSIDE');
      return lines.length > 0 ? lines : undefined;
    });
    const job = followUpJob(ctx.config, {
      kind: 'send',
      payload: { purchaseOrderId: line.purchase_order_id },
    });
    await ctx.api.queues.reorder.add(job.name, job.data, {
      ...job.opts,
      jobId: `reorder-send-now-${line.purchase_order_id}`,
    });
    const status = await ctx.waitForJob(`reorder-send-now-${line.purchase_order_id}`);
    expect(status).toMatchObject({
      state: 'failed',
      attemptsMade: 1,
      error: { code: 'send_failed', details: { reason: 'target_refused' } },
    });
    const attempts = await ctx.api
      .db('purchase_order_attempts')
      .where({ purchase_order_id: line.purchase_order_id });
    expect(attempts.map((a) => [a.outcome, a.status_code])).toEqual([['refused', null]]);
    expect(await api.level('INSIDE')).toMatchObject({ incoming: 0 });
  });
});
