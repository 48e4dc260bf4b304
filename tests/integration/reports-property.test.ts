import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ageingAnswer } from '../../src/reports/ageing-report.js';
import { abc, movements, sellThrough } from '../../src/reports/flow-reports.js';
import { compactAllPending } from '../../src/reports/rollups.js';
import { ageBuckets, ageLayers, gradeAbc } from '../../src/reports/rules.js';
import { currentValuationPage } from '../../src/reports/stock-valuation.js';
import {
  byLedgerTime,
  createReplay,
  levelKey,
  shownMoney,
  type ValuedMovement,
} from '../../src/reports/valuation.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { plantMovements, plantProducts } from '../helpers/ledger-plant.js';
import {
  busyDay,
  dayMs,
  expectAbcWindowEqualsLedger,
  expectValuationEqualsReplay,
  keepLevelsNonNegative,
  locations,
  naiveReplay,
  op,
  start,
  toMovements,
} from '../helpers/ledger-random.js';

let ctx: TestContext;

beforeAll(async () => {
  ctx = await createTestContext();
  await ctx.api.db.raw(`insert into locations (code, name) values ('north', 'North'), ('south', 'South')`);
});
afterAll(async () => {
  await ctx?.close();
});

const ledgerSums = new Map<string, number>();
const naive = (prefix: string, at?: Date) => naiveReplay(ctx.api.db, prefix, at);

let run = 0;

it('every report at random instants equals a naive replay of the ledger (backdated rows, negative stock, compaction at any point)', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.array(op, { minLength: 5, maxLength: 60 }), fc.boolean()), {
        minLength: 1,
        maxLength: 4,
      }),
      fc.array(
        fc.oneof(
          fc.integer({ min: -dayMs, max: 152 * dayMs }),
          fc.integer({ min: busyDay, max: busyDay + dayMs - 1 }),
        ),
        { minLength: 2, maxLength: 4 },
      ),
      fc.record({
        from: fc.integer({ min: -3 * dayMs, max: 150 * dayMs }),
        length: fc.integer({ min: 1, max: 70 * dayMs }),
        location: fc.option(fc.constantFrom(...locations), { nil: undefined }),
      }),
      async (batches, instants, window) => {
        run += 1;
        const prefix = `R${run}-`;
        ledgerSums.clear();
        await plantProducts(
          ctx.api.db,
          [0, 1, 2, 3].map((i) => `${prefix}S${i}`),
        );
        for (const [index, [ops, compact]] of batches.entries()) {
          await plantMovements(ctx.api.db, keepLevelsNonNegative(ledgerSums, toMovements(run, index, ops)));
          if (compact) await compactAllPending(ctx.api.db);
          for (const at of [undefined, ...instants.map((i) => new Date(start + i))]) {
            await expectValuationEqualsReplay(ctx.api.db, prefix, at);
          }
        }
        // Units per day × location × kind, over the whole history.
        const { sums } = await naive(prefix);
        const got = new Map<string, { in: number; out: number }>();
        await ctx.api.db.transaction(async (trx) => {
          const { rows } = await movements.run(
            trx,
            {
              from: '2025-12-31T00:00:00Z',
              to: '2026-06-30T00:00:00Z',
              bucket: 'day',
              groupBy: 'location',
              sku: { skuPrefix: prefix },
            },
            {},
          );
          for await (const batch of rows) {
            for (const r of batch as {
              bucket: string;
              location: string;
              kind: string;
              unitsIn: number;
              unitsOut: number;
            }[]) {
              got.set([r.bucket, r.location, r.kind].join('|'), { in: r.unitsIn, out: r.unitsOut });
            }
          }
        });
        expect(got).toEqual(sums);
        // Sold and returned per sku, over the whole history.
        const { rows: ledger } = await ctx.api.db.raw<{
          rows: { sku: string; sold: number; returned: number }[];
        }>(
          `select sku, coalesce(sum(-delta) filter (where kind = 'sale'), 0)::int as sold,
                  coalesce(sum(delta) filter (where kind = 'return'), 0)::int as returned
           from stock_movements where sku like ? group by sku`,
          [`${prefix}%`],
        );
        const selling = new Map<string, { sold: number; returned: number }>();
        await ctx.api.db.transaction(async (trx) => {
          const { rows: pages } = await sellThrough.run(
            trx,
            { from: '2025-12-31T00:00:00Z', to: '2026-06-30T00:00:00Z', sku: { skuPrefix: prefix } },
            {},
          );
          for await (const batch of pages) {
            for (const r of batch as { sku: string; sold: number; returned: number }[]) {
              if (r.sold || r.returned) selling.set(r.sku, { sold: r.sold, returned: r.returned });
            }
          }
        });
        expect(selling).toEqual(
          new Map(
            ledger
              .filter((r) => r.sold || r.returned)
              .map((r) => [r.sku, { sold: r.sold, returned: r.returned }]),
          ),
        );
        // ABC grades over the whole history: every product of the prefix graded as a whole (the
        // report ranks the skus that sold in SQL and grades the page's others beside them), whole
        // and in pages of 2.
        const { rows: priced } = await ctx.api.db.raw<{
          rows: { sku: string; currency: string; price: number }[];
        }>(`select sku, price_currency as currency, price_amount as price from products where sku like ?`, [
          `${prefix}%`,
        ]);
        const net = new Map(ledger.map((r) => [r.sku, r.sold - r.returned]));
        const wantAbc = ['EUR', 'USD']
          .flatMap((currency) =>
            gradeAbc(
              priced
                .filter((p) => p.currency === currency)
                .map((p) => {
                  const units = net.get(p.sku) ?? 0;
                  return { key: p.sku, units, revenue: units * p.price, amount: units * p.price };
                }),
            ).map((g) => ({
              sku: g.key,
              currency,
              units: g.units,
              revenue: g.revenue,
              share: g.share,
              cumulativeShare: g.cumulativeShare,
              grade: g.grade,
            })),
          )
          .sort((a, b) => (a.currency + a.sku < b.currency + b.sku ? -1 : 1));
        const abcRows = async (page: { after?: string[]; limit?: number }) =>
          ctx.api.db.transaction(async (trx) => {
            const { rows: pages, summary } = await abc.run(
              trx,
              {
                from: '2025-12-31T00:00:00Z',
                to: '2026-06-30T00:00:00Z',
                sku: { skuPrefix: prefix },
                basis: 'revenue',
              },
              page,
            );
            const all: unknown[] = [];
            for await (const batch of pages) all.push(...batch);
            return { all, summary };
          });
        const whole = await abcRows({});
        expect(whole.all).toEqual(wantAbc);
        expect(whole.summary).toEqual({
          grades: Object.fromEntries(
            ['A', 'B', 'C', 'U'].map((g) => [g, wantAbc.filter((r) => r.grade === g).length]),
          ),
        });
        const first = wantAbc[0]!;
        expect((await abcRows({ after: [first.currency, first.sku], limit: 2 })).all).toEqual(
          wantAbc.slice(1, 3),
        );
        // ABC over a random window (whole weeks from the weekly sales, the edge days from the daily
        // rollups; with a location the daily rollups only): each sku's net units against the ledger.
        const from = new Date(start + window.from);
        const to = new Date(from.getTime() + window.length);
        await expectAbcWindowEqualsLedger(ctx.api.db, prefix, { from, to, location: window.location });
      },
    ),
    // Runs share one database: shrinking would replay dozens of runs over it, so report the first failure.
    { numRuns: 30, endOnFailure: true },
  );
  // The instants were read through closed months (one row per level), rebuilt after backdated rows.
  const { rows } = await ctx.api.db.raw('select count(*)::int as n from stock_value_periods');
  expect(rows[0].n).toBeGreaterThan(3);
}, 240_000);

/** FIFO by hand: per level a queue of what is left of each inflow, oldest first, and the units owed. */
function naiveFifo(rows: ValuedMovement[]) {
  const levels = new Map<string, { queue: { day: string; units: number }[]; owed: number }>();
  for (const m of [...rows].sort(byLedgerTime)) {
    if (m.kind === 'reserve' || m.kind === 'release') continue;
    const key = levelKey(m.sku, m.location);
    const level = levels.get(key) ?? { queue: [], owed: 0 };
    levels.set(key, level);
    if (m.delta > 0) {
      const settled = Math.min(level.owed, m.delta);
      level.owed -= settled;
      if (m.delta > settled)
        level.queue.push({ day: m.createdAt.toISOString().slice(0, 10), units: m.delta - settled });
      continue;
    }
    let out = -m.delta;
    while (out > 0 && level.queue.length > 0) {
      const oldest = level.queue[0]!;
      const taken = Math.min(out, oldest.units);
      oldest.units -= taken;
      out -= taken;
      if (oldest.units === 0) level.queue.shift();
    }
    level.owed += out;
  }
  return levels;
}

it('ageing equals a FIFO replay of the ledger by hand (backdated inflows, stock at zero, a product changing currency, compaction at any point)', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.array(op, { minLength: 5, maxLength: 60 }), fc.boolean(), fc.boolean()), {
        minLength: 1,
        maxLength: 4,
      }),
      async (batches) => {
        run += 1;
        const prefix = `A${run}-`;
        ledgerSums.clear();
        await plantProducts(
          ctx.api.db,
          [0, 1, 2, 3].map((i) => `${prefix}S${i}`),
        );
        const now = Date.now();
        for (const [index, [ops, compact, flip]] of batches.entries()) {
          // The same random movements, within the last 150 days (the buckets all get some).
          const planted = toMovements(run, index, ops).map((m) => ({
            ...m,
            sku: m.sku.replace(/^R/, 'A'),
            createdAt: new Date(now - (m.createdAt.getTime() - start)),
          }));
          const kept = keepLevelsNonNegative(ledgerSums, planted).map((m) =>
            m.createdAt.getTime() > now ? { ...m, createdAt: new Date(now - 1000) } : m,
          );
          await plantMovements(ctx.api.db, kept);
          if (flip) {
            await ctx.api.db.raw(
              `update products set price_currency = case price_currency when 'EUR' then 'USD' else 'EUR' end where sku = ?`,
              [`${prefix}S0`],
            );
          }
          if (compact) await compactAllPending(ctx.api.db);
          await ctx.api.db.transaction(
            async (trx) => {
              const today = new Date().toISOString().slice(0, 10);
              const { rows: ledger } = await trx.raw<{ rows: ValuedMovement[] }>(
                `select id, sku, location, kind, delta, unit_cost as "unitCost", job_id as "jobId", created_at as "createdAt"
                 from stock_movements`,
              );
              const replay = createReplay();
              for (const m of [...ledger].sort(byLedgerTime)) replay.apply(m);
              const fifo = naiveFifo(ledger);
              const { rows: products } = await trx.raw<{ rows: { sku: string; currency: string }[] }>(
                'select sku, price_currency as currency from products',
              );
              const currency = new Map(products.map((p) => [p.sku, p.currency]));
              const expected = [...fifo]
                .map(([key, level]) => {
                  const [sku, location] = key.split('\u0000') as [string, string];
                  const state = replay.state(sku, location);
                  const units = ageLayers(level.queue, today);
                  const average = state.units > 0 ? state.value / state.units : 0;
                  return { sku, location, currency: currency.get(sku)!, onHand: state.units, units, average };
                })
                .filter((l) => l.onHand > 0)
                .sort((a, b) => (levelKey(a.sku, a.location) < levelKey(b.sku, b.location) ? -1 : 1));
              const totalsOf = (levels: typeof expected) => {
                const totals = new Map<
                  string,
                  { units: Record<string, number>; value: Record<string, number> }
                >();
                for (const l of levels) {
                  const t = totals.get(l.currency) ?? { units: {}, value: {} };
                  for (const b of ageBuckets) {
                    t.units[b] = (t.units[b] ?? 0) + l.units[b];
                    t.value[b] = (t.value[b] ?? 0) + l.units[b] * l.average;
                  }
                  totals.set(l.currency, t);
                }
                return totals;
              };
              const check = async (filter: { skuPrefix?: string }, location: string | undefined) => {
                const want = expected.filter(
                  (l) =>
                    (filter.skuPrefix === undefined || l.sku.startsWith(filter.skuPrefix)) &&
                    (location === undefined || l.location === location),
                );
                const got = await ageingAnswer(trx, filter, location, {});
                expect(got.rows).toEqual(
                  want.map((l) => ({
                    sku: l.sku,
                    location: l.location,
                    currency: l.currency,
                    onHand: l.onHand,
                    units: l.units,
                    value: Object.fromEntries(ageBuckets.map((b) => [b, shownMoney(l.units[b] * l.average)])),
                  })),
                );
                // A page of 2 after the first row: the same rows.
                if (want.length > 1) {
                  const page = await ageingAnswer(trx, filter, location, {
                    after: [want[0]!.sku, want[0]!.location],
                    limit: 2,
                  });
                  expect(page.rows).toEqual(got.rows.slice(1, 3));
                }
                const totals = totalsOf(want);
                expect(got.totals.map((t) => t.currency).sort()).toEqual([...totals.keys()].sort());
                for (const t of got.totals) {
                  const w = totals.get(t.currency)!;
                  expect(t.units).toEqual(w.units);
                  for (const b of ageBuckets) {
                    expect(Math.abs(t.value[b] - w.value[b]!)).toBeLessThanOrEqual(
                      1 + 1e-9 * Math.abs(w.value[b]!),
                    );
                  }
                }
              };
              await check({ skuPrefix: prefix }, undefined);
              await check({ skuPrefix: prefix }, 'north');
              // Every level of the database: the sums per currency and day.
              await check({}, undefined);
              // The valuation's totals over every level of the database (the sums per currency and
              // location kept by compaction, corrected for what is pending and changed currency),
              // and for one location.
              const levels = new Set(ledger.map((m) => levelKey(m.sku, m.location)));
              for (const location of [undefined, 'north']) {
                const want = new Map<string, { units: number; value: number }>();
                for (const key of levels) {
                  const [sku, at] = key.split('\u0000') as [string, string];
                  if (location !== undefined && at !== location) continue;
                  const state = replay.state(sku, at);
                  for (const l of [at, null]) {
                    const k = `${currency.get(sku)}|${l}`;
                    const t = want.get(k) ?? { units: 0, value: 0 };
                    t.units += state.units;
                    t.value += state.value;
                    want.set(k, t);
                  }
                }
                const { totals } = await currentValuationPage(trx, { filter: {}, location }, { limit: 1 });
                const got = new Map(totals.map((t) => [`${t.currency}|${t.location}`, t]));
                for (const [k, w] of want) {
                  if (w.units === 0 && Math.abs(w.value) < 1e-6) continue;
                  expect(got.get(k)?.units, k).toBe(w.units);
                  expect(Math.abs(got.get(k)!.value - w.value), k).toBeLessThanOrEqual(
                    1e-6 * Math.max(1, Math.abs(w.value)),
                  );
                }
                for (const k of got.keys()) expect(want.has(k), k).toBe(true);
              }
            },
            { isolationLevel: 'repeatable read' },
          );
        }
      },
    ),
    { numRuns: 25, endOnFailure: true },
  );
}, 240_000);
