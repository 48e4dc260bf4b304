import fc from 'fast-check';
import type { Knex } from 'knex';
import { expect } from 'vitest';
import { abc } from '../../src/reports/flow-reports.js';
import {
  currentValuationPage,
  type LevelValue,
  type ValueTotal,
  valueLevels,
} from '../../src/reports/stock-valuation.js';
import {
  byLedgerTime,
  createReplay,
  levelKey,
  shownCost,
  shownMoney,
  type ValuedMovement,
} from '../../src/reports/valuation.js';
import { valuationAtPage } from '../../src/reports/valuation-at.js';
import type { PlantedMovement } from './ledger-plant.js';
import { everyPage, type Get } from './report-pages.js';

/**
 * Random ledgers for the reports' tests, and the naive replay they are judged by: every ledger row,
 * in ledger time order, through the valuation rules, and net units sold summed from the rows.
 */

/** The locations the random movements use: `north` and `south` must be inserted by the test. */
export const locations = ['default', 'north', 'south'];
export const start = Date.parse('2026-01-01T00:00:00Z');
export const dayMs = 86_400_000;
export const busyDay = 40 * dayMs;

export const op = fc.record({
  sku: fc.integer({ min: 0, max: 3 }),
  from: fc.integer({ min: 0, max: 2 }),
  to: fc.integer({ min: 0, max: 2 }),
  kind: fc.constantFrom('receipt', 'receipt', 'sale', 'sale', 'return', 'adjustment', 'count', 'transfer'),
  quantity: fc.integer({ min: 1, max: 40 }),
  cost: fc.option(fc.integer({ min: 1, max: 5000 }), { nil: null, freq: 3 }),
  // Anywhere in about five months: later batches land before rows already folded (backdated); or on
  // one busy day, so `?at=` inside it replays part of a day over the day snapshots of many levels.
  at: fc.oneof(
    fc.integer({ min: 0, max: 150 * dayMs }),
    fc.integer({ min: busyDay, max: busyDay + dayMs - 1 }),
  ),
});
export type OpValue = {
  sku: number;
  from: number;
  to: number;
  kind: string;
  quantity: number;
  cost: number | null;
  at: number;
};

/** A batch of planted movements of the skus `R<run>-S<n>`. */
export function toMovements(run: number, batch: number, ops: OpValue[]): PlantedMovement[] {
  const planted: PlantedMovement[] = [];
  ops.forEach((o, i) => {
    const sku = `R${run}-S${o.sku}`;
    const createdAt = new Date(start + o.at);
    if (o.kind === 'transfer') {
      if (o.from === o.to) return;
      const jobId = `job-${run}-${batch}-${i}`;
      planted.push(
        { sku, location: locations[o.from]!, kind: 'transfer_out', delta: -o.quantity, jobId, createdAt },
        { sku, location: locations[o.to]!, kind: 'transfer_in', delta: o.quantity, jobId, createdAt },
      );
      return;
    }
    const sign =
      o.kind === 'sale' || (o.kind !== 'receipt' && o.kind !== 'return' && o.quantity % 3 === 0) ? -1 : 1;
    planted.push({
      sku,
      location: locations[o.from]!,
      kind: o.kind as PlantedMovement['kind'],
      delta: sign * o.quantity,
      unitCost: o.kind === 'receipt' ? o.cost : null,
      createdAt,
    });
  });
  return planted;
}

/**
 * Appends a receipt (day 151) to every level the batch would leave below zero; `ledgerSums` carries
 * each level's units over the batches of one run.
 */
export function keepLevelsNonNegative(
  ledgerSums: Map<string, number>,
  planted: PlantedMovement[],
): PlantedMovement[] {
  const extra: PlantedMovement[] = [];
  for (const m of planted)
    ledgerSums.set(levelKey(m.sku, m.location), (ledgerSums.get(levelKey(m.sku, m.location)) ?? 0) + m.delta);
  for (const [key, sum] of ledgerSums) {
    if (sum >= 0) continue;
    const [sku, location] = key.split('\u0000') as [string, string];
    extra.push({
      sku,
      location,
      kind: 'receipt',
      delta: -sum,
      unitCost: 100,
      createdAt: new Date(start + 151 * dayMs),
    });
    ledgerSums.set(key, 0);
  }
  return [...planted, ...extra];
}

/**
 * The naive replay: every ledger row of the skus starting with `prefix` (up to `at`), in ledger time
 * order: each level's state, and units in and out per day × location × kind.
 */
export async function naiveReplay(db: Knex, prefix: string, at?: Date) {
  const { rows } = await db.raw<{ rows: ValuedMovement[] }>(
    `select id, sku, location, kind, delta, unit_cost as "unitCost", job_id as "jobId", created_at as "createdAt"
     from stock_movements where sku like ? and (?::timestamptz is null or created_at <= ?)`,
    [`${prefix}%`, at ?? null, at ?? null],
  );
  const replay = createReplay();
  const sums = new Map<string, { in: number; out: number }>();
  for (const m of rows.sort(byLedgerTime)) {
    replay.apply(m);
    const day = m.createdAt.toISOString().slice(0, 10);
    const key = [day, m.location, m.kind].join('|');
    const s = sums.get(key) ?? { in: 0, out: 0 };
    if (m.delta > 0) s.in += m.delta;
    else s.out -= m.delta;
    sums.set(key, s);
  }
  return { states: replay.states, sums };
}

/**
 * Net units sold per sku (sale and commit out, less returns in) from the ledger rows of the whole
 * UTC days the window covers (`from` rounded down to its day, `to` up), at `location` or everywhere.
 */
export async function ledgerNetSold(
  db: Knex,
  prefix: string,
  window: { from: Date; to: Date; location?: string },
): Promise<Map<string, number>> {
  const { rows } = await db.raw<{ rows: { sku: string; net: number }[] }>(
    `select sku, sum(case kind when 'return' then -greatest(delta, 0) else greatest(-delta, 0) end)::int as net
     from stock_movements
     where sku like ? and kind in ('sale', 'commit', 'return') and (?::text is null or location = ?)
       and created_at >= date_trunc('day', ?::timestamptz at time zone 'UTC') at time zone 'UTC'
       and created_at < date_trunc('day', ?::timestamptz at time zone 'UTC' + interval '1 day' - interval '1 microsecond') at time zone 'UTC'
     group by sku`,
    [`${prefix}%`, window.location ?? null, window.location ?? null, window.from, window.to],
  );
  return new Map(rows.map((r) => [r.sku, r.net]));
}

/**
 * The levels of the skus starting with `prefix` as of `at` (now without it) by the naive replay, those
 * with units or value, in (sku, location) order, with their product's currency; values unrounded.
 */
async function replayedLevels(db: Knex, prefix: string, at?: Date): Promise<LevelValue[]> {
  const { states } = await naiveReplay(db, prefix, at);
  const { rows } = await db.raw<{ rows: { sku: string; currency: string }[] }>(
    'select sku, price_currency as currency from products where sku like ?',
    [`${prefix}%`],
  );
  const currencies = new Map(rows.map((r) => [r.sku, r.currency]));
  return [...states]
    .filter(([, s]) => s.units !== 0 || s.value !== 0)
    .map(([key, s]) => {
      const [sku, location] = key.split('\u0000') as [string, string];
      return { sku, location, currency: currencies.get(sku)!, units: s.units, value: s.value };
    })
    .sort((a, b) => (levelKey(a.sku, a.location) < levelKey(b.sku, b.location) ? -1 : 1));
}

/**
 * The valuation of the skus starting with `prefix` as of `at` (now without it) equals the naive
 * replay: every level (`valueLevels`), and the pages of 3 the API serves (as of `at` its own page
 * path: snapshots, rollups, the day of `at` replayed; now the folded states) with their totals.
 */
export async function expectValuationEqualsReplay(db: Knex, prefix: string, at?: Date): Promise<void> {
  const want = await replayedLevels(db, prefix, at);
  const got = await valueLevels(db, { at, filter: { skuPrefix: prefix } });
  expect(
    got.map((l) => ({ sku: l.sku, location: l.location, units: l.units, value: l.value })),
    `as of ${at?.toISOString() ?? 'now'}`,
  ).toEqual(want.map(({ currency: _, ...l }) => l));
  const paged: LevelValue[] = [];
  let after: [string, string] | undefined;
  let totals: ValueTotal[] = [];
  for (;;) {
    const page = at
      ? await valuationAtPage(db, { at, filter: { skuPrefix: prefix } }, { after, limit: 3 })
      : await currentValuationPage(db, { filter: { skuPrefix: prefix } }, { after, limit: 3 });
    paged.push(...page.levels);
    totals = page.totals;
    if (page.levels.length < 3) break;
    const last = page.levels[2]!;
    after = [last.sku, last.location];
  }
  expect(paged, `pages as of ${at?.toISOString() ?? 'now'}`).toEqual(got);
  const sum = got.reduce((v, l) => v + l.value, 0);
  const overall = totals.find((t) => t.location === null)?.value ?? 0;
  expect(Math.abs(overall - sum)).toBeLessThan(1e-6 * Math.max(1, Math.abs(sum)));
  for (const t of totals.filter((t) => t.location !== null)) {
    const own = got.filter((l) => l.location === t.location);
    expect(t.units).toBe(own.reduce((n, l) => n + l.units, 0));
  }
}

/**
 * `abc` by units over a window (whole weeks from the weekly sales, the edge days from the daily
 * rollups; with a location the daily rollups only): each product's net units equal the ledger's.
 */
export async function expectAbcWindowEqualsLedger(
  db: Knex,
  prefix: string,
  window: { from: Date; to: Date; location?: string },
): Promise<void> {
  const want = await productsNetSold(db, prefix, window);
  const graded = await db.transaction(async (trx) => {
    const { rows: pages } = await abc.run(
      trx,
      {
        from: window.from.toISOString(),
        to: window.to.toISOString(),
        location: window.location,
        sku: { skuPrefix: prefix },
        basis: 'units',
      },
      {},
    );
    const all: { sku: string; units: number }[] = [];
    for await (const batch of pages) all.push(...(batch as { sku: string; units: number }[]));
    return all;
  });
  expect(
    new Map(graded.map((r) => [r.sku, r.units])),
    `abc from ${window.from.toISOString()} to ${window.to.toISOString()} at ${window.location ?? 'every location'}`,
  ).toEqual(want);
}

/** Every product of the skus starting with `prefix` with its net units sold over the window by the ledger (0 without). */
async function productsNetSold(
  db: Knex,
  prefix: string,
  window: { from: Date; to: Date; location?: string },
): Promise<Map<string, number>> {
  const { rows: products } = await db.raw<{ rows: { sku: string }[] }>(
    'select sku from products where sku like ?',
    [`${prefix}%`],
  );
  const net = await ledgerNetSold(db, prefix, window);
  return new Map(products.map((p) => [p.sku, net.get(p.sku) ?? 0]));
}

/**
 * What the API serves over HTTP for the skus starting with `prefix` equals the naive replay:
 * `GET /api/pms/reports/stock-valuation` as of `at` (now without it), every cursor page of 3, each
 * level as shown (units, average cost, value in whole minor units) and the totals of every page
 * (units exact; value within one minor unit: the replay adds the unrounded values in another order).
 */
export async function expectServedValuationEqualsReplay(
  db: Knex,
  get: Get,
  prefix: string,
  at?: Date,
): Promise<void> {
  const levels = await replayedLevels(db, prefix, at);
  const query = new URLSearchParams({ sku: `${prefix}*`, ...(at ? { at: at.toISOString() } : {}) });
  const pages = await everyPage(get, `/api/pms/reports/stock-valuation?${query}`, 3);
  const asOf = `served as of ${at?.toISOString() ?? 'now'}`;
  expect(
    pages.flatMap((p) => p.items),
    asOf,
  ).toEqual(
    // Through JSON as the API sends it: an average of -0 is 0 there.
    JSON.parse(
      JSON.stringify(
        levels.map((l) => ({
          ...l,
          averageCost: l.units === 0 ? null : shownCost(l.value / l.units),
          value: shownMoney(l.value),
        })),
      ),
    ),
  );
  const want = new Map<string, { units: number; value: number }>();
  for (const l of levels) {
    for (const key of [`${l.currency} ${l.location}`, `${l.currency} *`]) {
      const t = want.get(key) ?? { units: 0, value: 0 };
      t.units += l.units;
      t.value += l.value;
      want.set(key, t);
    }
  }
  for (const page of pages) {
    const served = new Map<string, { units: number; value: number }>(
      page.totals.map((t: ValueTotal) => [`${t.currency} ${t.location ?? '*'}`, t]),
    );
    for (const key of new Set([...want.keys(), ...served.keys()])) {
      const w = want.get(key) ?? { units: 0, value: 0 };
      const s = served.get(key) ?? { units: 0, value: 0 };
      expect(s.units, `${asOf}: total units ${key}`).toBe(w.units);
      expect(Math.abs(s.value - shownMoney(w.value)), `${asOf}: total value ${key}`).toBeLessThanOrEqual(1);
    }
  }
}

/**
 * `GET /api/pms/reports/abc?basis=units` over a window for the skus starting with `prefix`, every
 * cursor page of 2: each product's units equal its net units sold by the ledger, and the grade counts
 * add up to the products.
 */
export async function expectServedAbcEqualsLedger(
  db: Knex,
  get: Get,
  prefix: string,
  window: { from: Date; to: Date; location?: string },
): Promise<void> {
  const want = await productsNetSold(db, prefix, window);
  const query = new URLSearchParams({
    basis: 'units',
    from: window.from.toISOString(),
    to: window.to.toISOString(),
    sku: `${prefix}*`,
    ...(window.location ? { location: window.location } : {}),
  });
  const pages = await everyPage(get, `/api/pms/reports/abc?${query}`, 2);
  const served = pages.flatMap((p) => p.items as { sku: string; units: number }[]);
  expect(new Map(served.map((r) => [r.sku, r.units])), `served abc ${query}`).toEqual(want);
  expect(served.map((r) => r.sku)).toHaveLength(want.size);
  const grades = pages[0].grades as Record<string, number>;
  expect(Object.values(grades).reduce((n, g) => n + g, 0)).toBe(want.size);
}
