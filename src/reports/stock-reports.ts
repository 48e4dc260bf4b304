import type { Knex } from 'knex';
import { z } from 'zod';
import { instantSchema, reportCursor } from '../schemas/fields.js';
import { dayOf, type SkuFilter, skuCondition } from './ledger-replay.js';
import { filterParams } from './params.js';
import { defineReport, inMemoryRows, type KeyPart } from './report.js';
import { currentValuationPage, type LevelValue, valuationTotals, valueLevels } from './stock-valuation.js';
import { shownCost, shownMoney } from './valuation.js';
import { valuationAtPage } from './valuation-at.js';

const textKey = z.string().max(200);
const levelCursor = (report: string) => reportCursor(report, z.tuple([textKey, textKey]));
const filterOf = (sku: SkuFilter | undefined): SkuFilter => sku ?? {};

const valuationQuery = z.object({
  ...filterParams,
  at: instantSchema.optional().describe('value the stock as of this instant (default: now)'),
});

const shownLevel = (l: LevelValue) => ({
  sku: l.sku,
  location: l.location,
  currency: l.currency,
  units: l.units,
  averageCost: l.units === 0 ? null : shownCost(l.value / l.units),
  value: shownMoney(l.value),
});
type ShownLevel = ReturnType<typeof shownLevel>;

export const stockValuation = defineReport({
  name: 'stock-valuation',
  summary: 'Units, moving average cost and value per sku × location, with totals per location and currency',
  formula:
    'Moving weighted average per sku × location over the ledger in time order: units in at cost c make the average (value + units × c) / (units before + units in); units out leave at the average; value = units × average.',
  edgeRules: [
    'a movement in without a cost (return, found, count, receipt without unitCost) comes in at the current average',
    'a transfer moves cost: units arrive at the average they left the other location at',
    'units going below zero are valued at the last known cost and settled at the cost of the next units in',
    'zero units is zero value; money is rounded to whole minor units only when shown, averages to 6 decimals',
    'totals add unrounded values, then round',
    '?at= values the stock as of that instant: movements with created_at at or before it',
  ],
  query: valuationQuery,
  cursor: levelCursor('stock-valuation'),
  key: (row: ShownLevel) => [row.sku, row.location],
  columns: [
    { name: 'sku', value: (r: ShownLevel) => r.sku, text: true },
    { name: 'location', value: (r) => r.location, text: true },
    { name: 'currency', value: (r) => r.currency, text: true },
    { name: 'units', value: (r) => r.units },
    { name: 'average_cost', value: (r) => r.averageCost },
    { name: 'value', value: (r) => r.value },
  ],
  async run(db, query, page) {
    if (query.at && page.limit !== undefined) {
      // A page as of an instant: its own levels replayed, the totals from snapshots and rollups.
      const { levels, totals } = await valuationAtPage(
        db,
        { at: new Date(query.at), filter: filterOf(query.sku), location: query.location },
        { after: page.after as [string, string] | undefined, limit: page.limit },
      );
      return {
        rows: inMemoryRows(levels, (r) => [r.sku, r.location], undefined, { sorted: true, show: shownLevel }),
        summary: { totals: totals.map((t) => ({ ...t, value: shownMoney(t.value) })) },
      };
    }
    if (!query.at && page.limit !== undefined) {
      // A page of the current valuation: no need to read every level.
      const { levels, totals } = await currentValuationPage(
        db,
        { filter: filterOf(query.sku), location: query.location },
        { after: page.after as [string, string] | undefined, limit: page.limit },
      );
      return {
        rows: inMemoryRows(levels, (r) => [r.sku, r.location], undefined, { sorted: true, show: shownLevel }),
        summary: { totals: totals.map((t) => ({ ...t, value: shownMoney(t.value) })) },
      };
    }
    const levels = await valueLevels(db, {
      at: query.at ? new Date(query.at) : undefined,
      filter: filterOf(query.sku),
      location: query.location,
    });
    return {
      rows: inMemoryRows(levels, (r) => [r.sku, r.location], page.after, { sorted: true, show: shownLevel }),
      summary: { totals: valuationTotals(levels).map((t) => ({ ...t, value: shownMoney(t.value) })) },
    };
  },
});

interface LowStockRow {
  sku: string;
  location: string;
  onHand: number;
  reserved: number;
  safetyStock: number;
  available: number;
  threshold: number;
  state: string;
  incoming: number;
  purchaseOrder: number | null;
  purchaseOrderStatus: string | null;
  expectedDate: string | null;
  dailySales: number;
  daysOfCover: number | null;
}

/** Days of sales the sales rate of low-stock and sell-through looks back over. */
const salesRateDays = 28;

export const lowStock = defineReport({
  name: 'low-stock',
  summary: 'Every sku × location at or below its reorder point or safety stock',
  formula:
    'available = max(0, on_hand − reserved − safety_stock); listed when available ≤ threshold (the reorder rule’s point, else the safety stock: the stock-state rule of the low_stock events). Days of cover = available ÷ units sold per day over the last 28 days.',
  edgeRules: [
    'no sales in the last 28 days: daysOfCover is null, not infinity',
    'the open purchase order is the newest one with units still outstanding for the level',
  ],
  query: z.object(filterParams),
  cursor: levelCursor('low-stock'),
  key: (row: LowStockRow) => [row.sku, row.location],
  columns: [
    { name: 'sku', value: (r: LowStockRow) => r.sku, text: true },
    { name: 'location', value: (r) => r.location, text: true },
    { name: 'state', value: (r) => r.state, text: true },
    { name: 'on_hand', value: (r) => r.onHand },
    { name: 'reserved', value: (r) => r.reserved },
    { name: 'safety_stock', value: (r) => r.safetyStock },
    { name: 'available', value: (r) => r.available },
    { name: 'threshold', value: (r) => r.threshold },
    { name: 'incoming', value: (r) => r.incoming },
    { name: 'purchase_order', value: (r) => r.purchaseOrder },
    { name: 'purchase_order_status', value: (r) => r.purchaseOrderStatus, text: true },
    { name: 'expected_date', value: (r) => r.expectedDate, text: true },
    { name: 'daily_sales', value: (r) => r.dailySales },
    { name: 'days_of_cover', value: (r) => r.daysOfCover },
  ],
  async run(db, query, page) {
    const rows = await lowStockRows(db, filterOf(query.sku), query.location, page);
    return { rows: inMemoryRows(rows, (r) => [r.sku, r.location], undefined) };
  },
});

/** Low levels in (sku, location) order, after `after`, at most `limit` (all without). */
export async function lowStockRows(
  db: Knex,
  filter: SkuFilter,
  location: string | undefined,
  page: { after?: KeyPart[]; limit?: number } = {},
): Promise<LowStockRow[]> {
  const after = page.after ?? ['', ''];
  const [where, bindings] = skuCondition(filter, 'l.sku');
  const since = new Date(Date.now() - salesRateDays * 86_400_000);
  const { rows } = await db.raw<{
    rows: (Omit<LowStockRow, 'dailySales' | 'daysOfCover'> & { sold: number })[];
  }>(
    `with low as (
       select * from (
         select l.sku, l.location, l.on_hand, l.reserved, l.safety_stock, l.incoming,
                greatest(0, l.on_hand - l.reserved - l.safety_stock) as available,
                stockflow_stock_threshold(l.reorder_point, l.safety_stock) as threshold
         from inventory_levels l
         where ${where} and (?::text is null or l.location = ?)
       ) t where available <= threshold and (sku collate "C", location collate "C") > (?, ?)
       order by sku collate "C", location collate "C" ${page.limit !== undefined ? `limit ${Number(page.limit)}` : ''}
     ), sold as (
       select sku, location, sum(units)::bigint as units from (
         select d.sku, d.location, d.units_out as units from stock_daily d join low using (sku, location)
         where d.day >= ?::date and d.kind in ('sale', 'commit')
         union all
         select p.sku, p.location, -p.delta from stock_rollup_pending p join low using (sku, location)
         where p.created_at >= ? and p.kind in ('sale', 'commit')
       ) s group by sku, location
     )
     select low.sku, low.location, low.on_hand as "onHand", low.reserved, low.safety_stock as "safetyStock",
            low.available, low.threshold, stockflow_stock_state(low.available, low.threshold) as state,
            low.incoming, po.number as "purchaseOrder", po.status as "purchaseOrderStatus",
            po.expected_date::text as "expectedDate", coalesce(sold.units, 0) as sold
     from low
     left join sold using (sku, location)
     left join lateral (
       select o.number, o.status, o.expected_date from purchase_order_lines pl
       join purchase_orders o on o.id = pl.purchase_order_id
       where pl.sku = low.sku and pl.location = low.location and pl.outstanding > 0
       order by o.created_at desc limit 1
     ) po on true`,
    [...bindings, location ?? null, location ?? null, after[0]!, after[1]!, dayOf(since), since],
  );
  return rows.map(({ sold, ...r }) => {
    const dailySales = Number(sold) / salesRateDays;
    return { ...r, dailySales, daysOfCover: dailySales > 0 ? r.available / dailySales : null };
  });
}
