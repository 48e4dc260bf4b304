import { parse } from 'csv-parse/sync';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compactAllPending } from '../../src/reports/rollups.js';
import { createProducts, createTestContext, type TestContext } from '../helpers/context.js';
import { plantProducts } from '../helpers/ledger-plant.js';
import { type Answer, everyPage } from '../helpers/report-pages.js';
import { until } from '../helpers/until.js';

let ctx: TestContext;
let base: string;

beforeAll(async () => {
  ctx = await createTestContext({ workers: ['products', 'inventory'] });
  base = await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  await createProducts(ctx, ['VAL-1', 'VAL-2']);
});
afterAll(async () => {
  await ctx?.close();
});

const read = async (response: Promise<Response> | Response): Promise<Answer> => (await response).json();

const get = (path: string, headers: Record<string, string> = {}, key: string | null = ctx.pmsKey) =>
  fetch(`${base}${path}`, { headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers } });

async function adjust(movements: object[]) {
  const response = await ctx.request({
    method: 'POST',
    url: '/api/pms/inventory/adjust',
    headers: { prefer: 'wait=10' },
    payload: { movements },
  });
  expect(response.statusCode, response.body).toBe(200);
  return JSON.parse(response.body) as { movements: { id: number; createdAt: string }[] };
}

describe('stock valuation through the API', () => {
  let beforeOut: string;

  it('receive 10 @ 100, 10 @ 200, 5 out: 15 units worth 2250 (average 150), fresh before any compaction', async () => {
    await adjust([{ sku: 'VAL-1', location: 'default', delta: 10, reason: 'received', unitCost: 100 }]);
    await adjust([{ sku: 'VAL-1', location: 'default', delta: 10, reason: 'received', unitCost: 200 }]);
    const out = await adjust([{ sku: 'VAL-1', location: 'default', delta: -5, reason: 'damaged' }]);
    beforeOut = new Date(Date.parse(out.movements[0]!.createdAt) - 1).toISOString();
    const response = await get('/api/pms/reports/stock-valuation?sku=VAL-1');
    expect(response.status).toBe(200);
    const body = await read(response);
    expect(body.items).toEqual([
      { sku: 'VAL-1', location: 'default', currency: 'EUR', units: 15, averageCost: 150, value: 2250 },
    ]);
    expect(body.asOf.movementId).toBe(out.movements[0]!.id);
    expect(body.totals).toEqual([
      { currency: 'EUR', location: 'default', units: 15, value: 2250 },
      { currency: 'EUR', location: null, units: 15, value: 2250 },
    ]);
  });

  it('asked ?at= a moment before the 5 went out: 20 units worth 3000; the same after compaction', async () => {
    for (const round of ['pending', 'compacted']) {
      const body = await read(get(`/api/pms/reports/stock-valuation?sku=VAL-*&at=${beforeOut}`));
      expect(body.items, round).toEqual([
        { sku: 'VAL-1', location: 'default', currency: 'EUR', units: 20, averageCost: 150, value: 3000 },
      ]);
      await compactAllPending(ctx.api.db);
    }
    const now = await read(get('/api/pms/reports/stock-valuation?sku=VAL-1'));
    expect(now.items[0]).toMatchObject({ units: 15, value: 2250 });
  });

  it('ages the units first in first out, valued at the average', async () => {
    const body = await read(get('/api/pms/reports/ageing?sku=VAL-1'));
    expect(body.items).toEqual([
      {
        sku: 'VAL-1',
        location: 'default',
        currency: 'EUR',
        onHand: 15,
        units: { '0-30': 15, '31-60': 0, '61-90': 0, '90+': 0 },
        value: { '0-30': 2250, '31-60': 0, '61-90': 0, '90+': 0 },
      },
    ]);
    expect(body.totals).toEqual([
      {
        currency: 'EUR',
        units: { '0-30': 15, '31-60': 0, '61-90': 0, '90+': 0 },
        value: { '0-30': 2250, '31-60': 0, '61-90': 0, '90+': 0 },
      },
    ]);
  });

  it('refuses a unit cost on a line that is not a receipt', async () => {
    const response = await ctx.request({
      method: 'POST',
      url: '/api/pms/inventory/adjust',
      payload: { movements: [{ sku: 'VAL-1', location: 'default', delta: -1, reason: 'lost', unitCost: 5 }] },
    });
    expect(response.statusCode).toBe(400);
    expect(JSON.parse(response.body).errors.map((e: { path: string }) => e.path)).toContain(
      'movements.0.unitCost',
    );
  });
});

describe('the boundary, over a socket', () => {
  it('lists every report with its formula and edge rules', async () => {
    const body = await read(get('/api/pms/reports'));
    expect(body.items.map((r: { name: string }) => r.name)).toEqual([
      'stock-valuation',
      'low-stock',
      'movements',
      'sell-through',
      'abc',
      'ageing',
      'reservations',
      'orders',
      'jobs',
      'webhooks',
    ]);
    for (const report of body.items) {
      expect(report.formula.length).toBeGreaterThan(20);
      expect(report.edgeRules.length).toBeGreaterThan(0);
    }
  });

  it('needs a key', async () => {
    expect((await get('/api/pms/reports/movements', {}, null)).status).toBe(401);
  });

  it('answers bad parameters with one 400 problem naming each', async () => {
    const response = await get(
      '/api/pms/reports/movements?from=yesterday&bucket=year&limit=0&sku=no%20spaces&cursor=zzz&location=..',
    );
    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const fields = (await read(response)).errors.map((e: { path: string }) => e.path).sort();
    expect([...new Set(fields)]).toEqual(['bucket', 'cursor', 'from', 'limit', 'location', 'sku']);
    const backwards = await get(
      '/api/pms/reports/sell-through?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z',
    );
    expect(backwards.status).toBe(400);
    expect(JSON.stringify(await read(backwards))).toContain('from');
    // A cursor of another report is refused too.
    const page = await read(get('/api/pms/reports/stock-valuation?limit=1'));
    const foreign = await get(`/api/pms/reports/low-stock?cursor=${page.nextCursor ?? 'x'}`);
    expect(foreign.status).toBe(400);
  });

  it('pages with a keyset cursor: the pages together are the whole answer', async () => {
    await adjust([
      { sku: 'VAL-2', location: 'default', delta: 3, reason: 'received', unitCost: 7 },
      { sku: 'VAL-2', location: 'default', delta: -1, reason: 'damaged' },
    ]);
    await ctx.api.db.raw(`insert into locations (code, name) values ('east', 'East')`);
    for (const query of [
      'movements?groupBy=sku',
      'stock-valuation?sku=VAL-*',
      'sell-through?sku=VAL-*',
      'low-stock?sku=VAL-*',
      'abc?sku=VAL-*',
    ]) {
      const whole = await read(get(`/api/pms/reports/${query}`));
      expect(whole.items.length, query).toBeGreaterThanOrEqual(2);
      const pages = await everyPage((path) => get(path), `/api/pms/reports/${query}`, 1);
      expect(
        pages.flatMap((p) => p.items),
        query,
      ).toEqual(whole.items);
    }
  });

  it('streams CSV: RFC 4180 with a header row, a filename, formula escaping on text columns only', async () => {
    await plantProducts(ctx.api.db, ['-3']);
    await adjust([
      { sku: '-3', location: 'default', delta: 5, reason: 'received', unitCost: 10 },
      { sku: '-3', location: 'default', delta: -3, reason: 'damaged' },
    ]);
    await ctx.api.db.raw(
      `insert into webhook_endpoints (url, description, event_types, secret)
       values ('https://example.com/hook', '=HYPERLINK("x")', '{stock.moved}', 'unused')`,
    );
    const response = await get('/api/pms/reports/movements?groupBy=sku&sku=-3', { accept: 'text/csv' });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/csv/);
    expect(response.headers.get('content-disposition')).toMatch(
      /^attachment; filename="movements-\d{4}-\d{2}-\d{2}\.csv"$/,
    );
    const text = await response.text();
    expect(text.slice(0, 200)).toMatch(
      /^bucket,location,kind,sku,units_in,units_out,net,movements,value_in,value_out\r\n/,
    );
    const rows = parse(text, { columns: true }) as Record<string, string>[];
    const out = rows.find((r) => r.kind === 'adjustment')!;
    expect(out).toMatchObject({ sku: "'-3", units_out: '3', net: '-3', value_out: '30' });

    const hooks = await get('/api/pms/reports/webhooks', { accept: 'text/csv' });
    const hookRows = parse(await hooks.text(), { columns: true }) as Record<string, string>[];
    expect(hookRows[0]).toMatchObject({ description: `'=HYPERLINK("x")`, deliveries: '0' });
  });

  it('records job runs for the jobs report', async () => {
    // Attempts are written within 100 ms of finishing, several to an insert (src/reports/job-runs.ts).
    const adjustRuns = await until(
      'the adjust runs recorded',
      async () =>
        (await read(get('/api/pms/reports/jobs'))).items.find(
          (r: { name: string }) => r.name === 'inventory.adjust',
        ),
      (r) => (r?.completed ?? 0) >= 5,
      5000,
    );
    expect(adjustRuns).toMatchObject({ queue: 'inventory', completed: expect.any(Number) });
    expect(adjustRuns.completed).toBeGreaterThanOrEqual(5);
    expect(adjustRuns.runMsP50).toEqual(expect.any(Number));
  });
});

describe('EXPLAIN', () => {
  it('reads no ledger or event log sequentially for a bounded range', async () => {
    // Enough rows for the planner's choice to mean something: 30,000 movements and their events.
    const skus = Array.from({ length: 300 }, (_, i) => `EXPLAIN-${i}`);
    // Set-up, not what is judged: 30,000 rows through the ledger's triggers and their compaction
    // may outlast the API pool's statement timeout on a loaded machine, so they run without it.
    await ctx.api.db.transaction(async (trx) => {
      await trx.raw('set local statement_timeout = 0');
      await plantProducts(trx, skus);
      await trx.raw(
        `insert into stock_movements (kind, sku, location, delta, reason, on_hand_after, reserved_after)
         select 'receipt', (?::text[])[1 + g % 300], 'default', 1, 'received', 0, 0
         from generate_series(1, 30000) g`,
        [skus],
      );
      await compactAllPending(trx);
    });
    await ctx.api.db.raw('analyze');
    const statements: { sql: string; bindings: unknown[] }[] = [];
    const record = (q: { sql: string; bindings?: unknown[] }) =>
      statements.push({ sql: q.sql, bindings: q.bindings ?? [] });
    ctx.api.db.on('query', record);
    const day = '&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z';
    try {
      for (const path of [
        `movements?bucket=hour${day}`,
        `movements?bucket=day${day}`,
        `stock-valuation?at=2026-01-01T12:00:00Z`,
        `stock-valuation?limit=10`,
        `low-stock?limit=10`,
        `ageing?limit=10`,
        `abc?limit=10${day}`,
        `sell-through?${day}`,
        `webhooks?${day}`,
        `orders?${day}`,
        `reservations?${day}`,
        `jobs?${day}`,
      ]) {
        expect((await get(`/api/pms/reports/${path}`)).status, path).toBe(200);
      }
    } finally {
      ctx.api.db.off('query', record);
    }
    const scans: string[] = [];
    // The statements as sent ($n placeholders): explained through a plain pg client.
    const client = new pg.Client({ connectionString: ctx.config.DATABASE_URL });
    await client.connect();
    for (const { sql, bindings } of statements) {
      const select = sql.replace(/^\s*declare \w+ no scroll cursor for /i, '');
      if (!/stock_movements|\bevents\b/.test(select) || !/^\s*(select|with)/i.test(select)) continue;
      const { rows } = await client.query(`explain (format json) ${select}`, bindings);
      const walk = (node: Record<string, unknown>) => {
        if (
          node['Node Type'] === 'Seq Scan' &&
          ['stock_movements', 'events'].includes(String(node['Relation Name']))
        ) {
          scans.push(`${node['Relation Name']}: ${select.slice(0, 120)}`);
        }
        for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child);
      };
      walk(rows[0]['QUERY PLAN'][0].Plan);
    }
    await client.end();
    expect(statements.length).toBeGreaterThan(8);
    expect(scans).toEqual([]);
  });
});
