import type { Knex } from 'knex';
import { z } from 'zod';
import { reportCursor } from '../schemas/fields.js';
import {
  foldMovements,
  pendingMovements,
  type SkuFilter,
  salesKinds,
  skuCondition,
  weekOf,
} from './ledger-replay.js';
import {
  checkWindow,
  daysOf,
  filterParams,
  type Window,
  windowDays,
  windowOf,
  windowParams,
} from './params.js';
import { cursorRows, defineReport, inMemoryRows, type KeyPart } from './report.js';
import { type AbcGrade, gradeAbc } from './rules.js';
import { shownMoney } from './valuation.js';

const textKey = z.string().max(200);
const filterOf = (sku: SkuFilter | undefined): SkuFilter => sku ?? {};

const movementsQuery = z.object({
  ...windowParams,
  ...filterParams,
  bucket: z.enum(['hour', 'day', 'week']).default('day'),
  groupBy: z.enum(['location', 'sku']).default('location').describe('sku: one row per sku as well'),
});

interface MovementRow {
  bucket: string;
  location: string;
  kind: string;
  sku: string | null;
  unitsIn: number;
  unitsOut: number;
  net: number;
  movements: number;
  valueIn: number | null;
  valueOut: number | null;
}

export const movements = defineReport({
  name: 'movements',
  summary: 'Units (and value) moved per bucket (hour, day, week) × kind × location, optionally per sku',
  formula:
    'Sums of the ledger per bucket: units in (positive deltas), units out (negative deltas, as positive numbers), net, movements; value in and out are the changes the movements made to their levels’ moving-average value.',
  edgeRules: [
    'day and week buckets are whole UTC days (from rounds down to its day, to up); weeks start on Monday',
    'hour buckets read the ledger itself (at most 31 days) and carry no value',
    'reserve and release move reserved, not on_hand: their value is 0',
  ],
  query: movementsQuery,
  check(q: { from?: string; to?: string; bucket?: string }, ctx: z.RefinementCtx) {
    checkWindow(q, ctx);
    const { from, to } = windowOf(q);
    if (q.bucket === 'hour' && to.getTime() - from.getTime() > 31 * 86_400_000) {
      ctx.addIssue({ code: 'custom', path: ['bucket'], message: 'hour buckets cover at most 31 days' });
    }
  },
  cursor: reportCursor('movements', z.tuple([textKey, textKey, textKey, textKey])),
  key: (r: MovementRow) => [r.sku ?? '', r.bucket, r.location, r.kind],
  columns: [
    { name: 'bucket', value: (r: MovementRow) => r.bucket, text: true },
    { name: 'location', value: (r) => r.location, text: true },
    { name: 'kind', value: (r) => r.kind, text: true },
    { name: 'sku', value: (r) => r.sku, text: true },
    { name: 'units_in', value: (r) => r.unitsIn },
    { name: 'units_out', value: (r) => r.unitsOut },
    { name: 'net', value: (r) => r.net },
    { name: 'movements', value: (r) => r.movements },
    { name: 'value_in', value: (r) => r.valueIn },
    { name: 'value_out', value: (r) => r.valueOut },
  ],
  async run(db, query, page) {
    return { rows: movementRows(db, query, page.after, page.limit) };
  },
});

type MovementsQuery = z.output<typeof movementsQuery>;

/** The SQL behind `movements`, keyset-ordered by (sku, bucket, location, kind); values of pending rows added in JS. */
async function* movementRows(
  db: Knex,
  query: MovementsQuery,
  after: KeyPart[] | undefined,
  limit: number | undefined,
): AsyncIterable<MovementRow[]> {
  const window = windowOf(query);
  const filter = filterOf(query.sku);
  const perSku = query.groupBy === 'sku';
  const skuColumn = perSku ? 'sku' : `''`;
  const [skuWhere, skuBindings] = skuCondition(filter);
  const loc = query.location ?? null;
  let source: string;
  let bindings: Knex.RawBinding[];
  if (query.bucket === 'hour') {
    source = `select to_char(date_trunc('hour', created_at at time zone 'UTC'), 'YYYY-MM-DD"T"HH24:00:00"Z"') as bucket,
                location, kind, ${skuColumn} as sku, greatest(delta, 0) as units_in, greatest(-delta, 0) as units_out,
                null::float8 as value_in, null::float8 as value_out, 1 as movements
              from stock_movements
              where created_at >= ? and created_at < ? and (?::text is null or location = ?) and ${skuWhere}`;
    bindings = [window.from, window.to, loc, loc, ...skuBindings];
  } else {
    const { fromDay, toDay, fromStart, toStart } = daysOf(window);
    const bucketOf = (day: string) =>
      query.bucket === 'week' ? `date_trunc('week', ${day})::date::text` : `${day}::text`;
    const table = perSku || query.sku ? 'stock_daily' : 'stock_daily_totals';
    source = `select ${bucketOf('day')} as bucket, location, kind, ${skuColumn} as sku, units_in, units_out,
                value_in, value_out, movements
              from ${table} where day >= ?::date and day < ?::date and (?::text is null or location = ?)
                and ${table === 'stock_daily' ? skuWhere : 'true'}
              union all
              select ${bucketOf(`(created_at at time zone 'UTC')::date`)}, location, kind, ${skuColumn},
                greatest(delta, 0), greatest(-delta, 0), 0, 0, 1
              from stock_rollup_pending
              where created_at >= ? and created_at < ? and (?::text is null or location = ?) and ${skuWhere}`;
    bindings = [
      fromDay,
      toDay,
      loc,
      loc,
      ...(table === 'stock_daily' ? skuBindings : []),
      fromStart,
      toStart,
      loc,
      loc,
      ...skuBindings,
    ];
  }
  const keyset = after ? `where (sku, bucket, location, kind) > (?, ?, ?, ?)` : '';
  const sql = `select * from (
      select sku collate "C" as sku, bucket collate "C" as bucket, location collate "C" as location,
             kind collate "C" as kind, sum(units_in)::bigint as units_in, sum(units_out)::bigint as units_out,
             sum(value_in) as value_in, sum(value_out) as value_out, sum(movements)::bigint as movements
      from (${source}) r group by 1, 2, 3, 4
    ) g ${keyset} order by sku, bucket, location, kind${limit !== undefined ? ` limit ${limit}` : ''}`;
  const pendingValues = query.bucket === 'hour' ? undefined : await pendingValueMap(db, query, filter);
  type Raw = {
    sku: string;
    bucket: string;
    location: string;
    kind: string;
    units_in: number;
    units_out: number;
    value_in: number | null;
    value_out: number | null;
    movements: number;
  };
  for await (const batch of cursorRows<Raw>(db, sql, [...bindings, ...(after ?? [])])) {
    yield batch.map((r) => {
      const extra = pendingValues?.get([r.sku, r.bucket, r.location, r.kind].join('\u0000'));
      return {
        bucket: r.bucket,
        location: r.location,
        kind: r.kind,
        sku: perSku ? r.sku : null,
        unitsIn: r.units_in,
        unitsOut: r.units_out,
        net: r.units_in - r.units_out,
        movements: r.movements,
        valueIn: r.value_in === null ? null : shownMoney(r.value_in + (extra?.in ?? 0)),
        valueOut: r.value_out === null ? null : shownMoney(r.value_out + (extra?.out ?? 0)),
      };
    });
  }
}

/** Values of the movements not compacted yet, by (sku or '', bucket, location, kind). */
async function pendingValueMap(
  db: Knex,
  query: MovementsQuery,
  filter: SkuFilter,
): Promise<Map<string, { in: number; out: number }>> {
  const fold = await foldMovements(db, await pendingMovements(db, filter));
  const map = new Map<string, { in: number; out: number }>();
  for (const { movement: m, value } of fold.applied) {
    const day = new Date(
      Date.UTC(m.createdAt.getUTCFullYear(), m.createdAt.getUTCMonth(), m.createdAt.getUTCDate()),
    );
    if (query.bucket === 'week') day.setUTCDate(day.getUTCDate() - ((day.getUTCDay() + 6) % 7));
    const key = [
      query.groupBy === 'sku' ? m.sku : '',
      day.toISOString().slice(0, 10),
      m.location,
      m.kind,
    ].join('\u0000');
    const entry = map.get(key) ?? { in: 0, out: 0 };
    if (m.delta > 0) entry.in += value;
    else entry.out -= value;
    map.set(key, entry);
  }
  return map;
}

const windowQuery = z.object({ ...windowParams, ...filterParams });

/** Units per sku over a window (whole UTC days) from the daily rollups and the pending rows: kinds → units in and out. */
async function unitsPerSku(
  db: Knex,
  window: Window,
  filter: SkuFilter | { skus: string[] },
  location: string | undefined,
  kinds: string[],
): Promise<Map<string, { in: number; out: number }>> {
  const { fromDay, toDay, fromStart, toStart } = daysOf(window);
  const [where, bindings] = skuCondition(filter);
  const loc = location ?? null;
  const { rows } = await db.raw<{
    rows: { sku: string; kind: string; units_in: number; units_out: number }[];
  }>(
    `select sku, kind, sum(units_in)::bigint as units_in, sum(units_out)::bigint as units_out from (
       select sku, kind, units_in, units_out from stock_daily
       where day >= ?::date and day < ?::date and kind = any(?) and (?::text is null or location = ?) and ${where}
       union all
       select sku, kind, greatest(delta, 0), greatest(-delta, 0) from stock_rollup_pending
       where created_at >= ? and created_at < ? and kind = any(?) and (?::text is null or location = ?)
         and ${where}
     ) r group by sku, kind`,
    [fromDay, toDay, kinds, loc, loc, ...bindings, fromStart, toStart, kinds, loc, loc, ...bindings],
  );
  const map = new Map<string, { in: number; out: number }>();
  for (const r of rows) {
    const key = `${r.sku}\u0000${r.kind}`;
    map.set(key, { in: r.units_in, out: r.units_out });
  }
  return map;
}

/** In sku order, after `after`, at most `limit` (all without). */
async function productsWithStock(
  db: Knex,
  filter: SkuFilter,
  location: string | undefined,
  page: { after?: KeyPart[]; limit?: number } = {},
) {
  const [where, bindings] = skuCondition(filter);
  // The page of products first (an index range in key order), then each one's levels.
  const { rows } = await db.raw<{
    rows: { sku: string; currency: string; price: number; on_hand: number; available: number }[];
  }>(
    `select p.sku, p.currency, p.price, coalesce(l.on_hand, 0)::bigint as on_hand,
            coalesce(l.available, 0)::bigint as available
     from (
       select sku, price_currency as currency, price_amount as price from products
       where ${where} and sku collate "C" > ? order by sku collate "C"
       ${page.limit !== undefined ? `limit ${Number(page.limit)}` : ''}
     ) p left join lateral (
       select sum(l.on_hand) as on_hand, sum(greatest(0, l.on_hand - l.reserved - l.safety_stock)) as available
       from inventory_levels l where l.sku = p.sku and (?::text is null or l.location = ?)
     ) l on true
     order by p.sku collate "C"`,
    [...bindings, page.after?.[0] ?? '', location ?? null, location ?? null],
  );
  return rows;
}

interface SellThroughRow {
  sku: string;
  sold: number;
  returned: number;
  net: number;
  onHand: number;
  available: number;
  sellThroughRate: number | null;
  dailySales: number;
  daysOfInventory: number | null;
}

export const sellThrough = defineReport({
  name: 'sell-through',
  summary:
    'Sold, returned and net units per sku over a window; sell-through rate; days of inventory remaining',
  formula:
    'sold = units out of sale and commit movements; returned = units of return movements; net = sold − returned; sell-through rate = net ÷ (net + on hand now); days of inventory = available now ÷ (net ÷ days in the window).',
  edgeRules: [
    'the window is whole UTC days (from rounds down, to up)',
    'no net sales: daysOfInventory is null, not infinity; nothing sold and nothing on hand: sellThroughRate is null',
  ],
  query: windowQuery,
  check: checkWindow,
  cursor: reportCursor('sell-through', z.tuple([textKey])),
  key: (r: SellThroughRow) => [r.sku],
  columns: [
    { name: 'sku', value: (r: SellThroughRow) => r.sku, text: true },
    { name: 'sold', value: (r) => r.sold },
    { name: 'returned', value: (r) => r.returned },
    { name: 'net', value: (r) => r.net },
    { name: 'on_hand', value: (r) => r.onHand },
    { name: 'available', value: (r) => r.available },
    { name: 'sell_through_rate', value: (r) => r.sellThroughRate },
    { name: 'daily_sales', value: (r) => r.dailySales },
    { name: 'days_of_inventory', value: (r) => r.daysOfInventory },
  ],
  async run(db, query, page) {
    const window = windowOf(query);
    const rows = await sellThroughRows(db, window, filterOf(query.sku), query.location, page);
    const { fromDay, toDay } = daysOf(window);
    return {
      rows: inMemoryRows(rows, (r) => [r.sku], page.after),
      summary: { window: { from: fromDay, to: toDay } },
    };
  },
});

interface AbcRow {
  sku: string;
  currency: string;
  units: number;
  revenue: number;
  share: number;
  cumulativeShare: number;
  grade: AbcGrade;
}

export const abc = defineReport({
  name: 'abc',
  summary: 'ABC grades per sku by revenue (or units) over a window',
  formula:
    'Per currency, skus sorted by revenue (net units sold × the product’s price) or by net units (?basis=units), largest first; a sku is A while the share of those before it is below 0.80, B below 0.95, else C.',
  edgeRules: [
    'no net sales in the window: grade U',
    'ties are ordered by sku; a sku straddling a cut-off takes the better grade; the largest is always A',
    'revenue uses the product’s current price; grades are per currency',
  ],
  query: z.object({
    ...windowParams,
    ...filterParams,
    basis: z.enum(['revenue', 'units']).default('revenue'),
  }),
  check: checkWindow,
  cursor: reportCursor('abc', z.tuple([textKey, textKey])),
  key: (r: AbcRow) => [r.currency, r.sku],
  columns: [
    { name: 'sku', value: (r: AbcRow) => r.sku, text: true },
    { name: 'currency', value: (r) => r.currency, text: true },
    { name: 'units', value: (r) => r.units },
    { name: 'revenue', value: (r) => r.revenue },
    { name: 'share', value: (r) => r.share },
    { name: 'cumulative_share', value: (r) => r.cumulativeShare },
    { name: 'grade', value: (r) => r.grade, text: true },
  ],
  async run(db, query, page) {
    const filter = filterOf(query.sku);
    // Grades rank every sku that sold; the rest (no net sales: U) are needed for the page only.
    const sold = await netSalesPerSku(db, windowOf(query), filter, query.location);
    const products = await abcPage(db, filter, page);
    const soldSkus = new Set(sold.map((s) => s.sku));
    const byCurrency = new Map<string, { key: string; amount: number; units: number; revenue: number }[]>();
    const add = (p: { sku: string; currency: string; price: number }, net: number) => {
      const revenue = net * p.price;
      const list = byCurrency.get(p.currency) ?? [];
      list.push({ key: p.sku, units: net, revenue, amount: query.basis === 'units' ? net : revenue });
      byCurrency.set(p.currency, list);
    };
    for (const s of sold) add(s, s.net);
    // With nothing sold a sku adds nothing to the total and ranks after every sku that sold: grading
    // the page's ones beside those gives them what grading every product would.
    for (const p of products.rows) if (!soldSkus.has(p.sku)) add(p, 0);
    const graded = new Map(
      [...byCurrency].flatMap(([currency, items]) =>
        gradeAbc(items).map((g): [string, AbcRow] => [
          g.key,
          {
            sku: g.key,
            currency,
            units: g.units,
            revenue: g.revenue,
            share: g.share,
            cumulativeShare: g.cumulativeShare,
            grade: g.grade,
          },
        ]),
      ),
    );
    const counts: Record<AbcGrade, number> = { A: 0, B: 0, C: 0, U: 0 };
    for (const s of sold) counts[graded.get(s.sku)!.grade] += 1;
    counts.U = products.count - counts.A - counts.B - counts.C;
    const rows = products.rows.map((p) => graded.get(p.sku)!);
    return {
      rows: inMemoryRows(rows, (r) => [r.currency, r.sku], undefined, { sorted: true }),
      summary: { grades: counts },
    };
  },
});

/**
 * Net units sold (sale and commit out, less returns) per sku over a window, with its product's
 * price: the skus with any, summed in SQL from the weekly sales for the window's whole weeks (every
 * location; with a location filter none), the daily rollups for the days at its edges, and the rows
 * not compacted yet.
 */
async function netSalesPerSku(
  db: Knex,
  window: Window,
  filter: SkuFilter,
  location: string | undefined,
): Promise<{ sku: string; currency: string; price: number; net: number }[]> {
  const { fromDay, toDay, fromStart, toStart } = daysOf(window);
  // Whole weeks [fromWeek, toWeek): the Monday on or after the start, the Monday on or before the end.
  const firstMonday = weekOf(fromDay) === fromDay ? fromDay : nextWeek(weekOf(fromDay));
  const lastMonday = weekOf(toDay);
  const weeks = location === undefined && firstMonday < lastMonday;
  const fromWeek = weeks ? firstMonday : toDay;
  const toWeek = weeks ? lastMonday : toDay;
  const [where, bindings] = skuCondition(filter);
  const loc = location ?? null;
  const net = `case kind when 'return' then -units_in else units_out end`;
  const { rows } = await db.raw<{ rows: { sku: string; currency: string; price: number; net: number }[] }>(
    `select s.sku, p.price_currency as currency, p.price_amount as price, s.net from (
       select sku, sum(net)::bigint as net from (
         select sku, net from stock_sales_weekly where week >= ?::date and week < ?::date and ${where}
         union all
         select sku, ${net} from stock_daily
         where kind = any(?) and day >= ?::date and day < ?::date and (?::text is null or location = ?) and ${where}
         union all
         select sku, ${net} from stock_daily
         where kind = any(?) and day >= ?::date and day < ?::date and (?::text is null or location = ?) and ${where}
         union all
         select sku, case kind when 'return' then -greatest(delta, 0) else greatest(-delta, 0) end
         from stock_rollup_pending
         where created_at >= ? and created_at < ? and kind = any(?) and (?::text is null or location = ?)
           and ${where}
       ) r group by sku
     ) s join products p on p.sku = s.sku
     where s.net <> 0`,
    [
      fromWeek,
      toWeek,
      ...bindings,
      salesKinds,
      fromDay,
      fromWeek,
      loc,
      loc,
      ...bindings,
      salesKinds,
      toWeek,
      toDay,
      loc,
      loc,
      ...bindings,
      fromStart,
      toStart,
      salesKinds,
      loc,
      loc,
      ...bindings,
    ],
  );
  return rows.map((r) => ({ ...r, net: Number(r.net) }));
}

const nextWeek = (monday: string) =>
  new Date(Date.parse(`${monday}T00:00:00Z`) + 7 * 86_400_000).toISOString().slice(0, 10);

/** The products of a filter in the abc key order (currency, sku) after `after`, and how many there are. */
async function abcPage(db: Knex, filter: SkuFilter, page: { after?: KeyPart[]; limit?: number }) {
  const [where, bindings] = skuCondition(filter);
  const after = page.after ?? ['', ''];
  const { rows } = await db.raw<{ rows: { sku: string; currency: string; price: number }[] }>(
    `select sku, price_currency as currency, price_amount as price from products
     where ${where} and (price_currency collate "C", sku collate "C") > (?, ?)
     order by price_currency collate "C", sku collate "C"
     ${page.limit !== undefined ? `limit ${Number(page.limit)}` : ''}`,
    [...bindings, after[0]!, after[1]!],
  );
  const { rows: count } = await db.raw<{ rows: { n: number }[] }>(
    `select count(*)::int as n from products where ${where}`,
    bindings,
  );
  return { rows, count: count[0]!.n };
}

async function sellThroughRows(
  db: Knex,
  window: Window,
  filter: SkuFilter,
  location: string | undefined,
  page: { after?: KeyPart[]; limit?: number } = {},
): Promise<SellThroughRow[]> {
  const products = await productsWithStock(db, filter, location, page);
  // A page reads the units of its own skus only.
  const units = await unitsPerSku(
    db,
    window,
    page.limit !== undefined ? { skus: products.map((p) => p.sku) } : filter,
    location,
    salesKinds,
  );
  const { fromDay, toDay } = daysOf(window);
  const days = windowDays({ from: new Date(fromDay), to: new Date(toDay) });
  const rows = products.map((p): SellThroughRow => {
    const sold = (units.get(`${p.sku}\u0000sale`)?.out ?? 0) + (units.get(`${p.sku}\u0000commit`)?.out ?? 0);
    const returned = units.get(`${p.sku}\u0000return`)?.in ?? 0;
    const net = sold - returned;
    const dailySales = net / days;
    return {
      sku: p.sku,
      sold,
      returned,
      net,
      onHand: p.on_hand,
      available: p.available,
      sellThroughRate: net + p.on_hand > 0 ? net / (net + p.on_hand) : null,
      dailySales,
      daysOfInventory: dailySales > 0 ? p.available / dailySales : null,
    };
  });
  return rows;
}

/** The skus that sold most (net units) over a window, for the /ops page. */
export async function topSellers(db: Knex, window: Window, count: number): Promise<SellThroughRow[]> {
  const rows = await sellThroughRows(db, window, {}, undefined);
  return rows
    .filter((r) => r.net > 0)
    .sort((a, b) => b.net - a.net || (a.sku < b.sku ? -1 : 1))
    .slice(0, count);
}
