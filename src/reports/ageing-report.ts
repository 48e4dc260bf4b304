import type { Knex } from 'knex';
import { z } from 'zod';
import { reportCursor } from '../schemas/fields.js';
import { type DayPart, dayParts, layersAfter, loadLayers } from './fifo-layers.js';
import { dayOf, type FoldedState, type SkuFilter, skuCondition } from './ledger-replay.js';
import { filterParams } from './params.js';
import { defineReport, inMemoryRows, type KeyPart } from './report.js';
import { type AgeBucket, ageBucketOf, ageBuckets, ageDays, ageLayers, type Layer } from './rules.js';
import { liveStates } from './stock-valuation.js';
import { currentCost, levelKey, shownMoney, type ValueState } from './valuation.js';

const textKey = z.string().max(200);

interface AgeingRow {
  sku: string;
  location: string;
  currency: string;
  onHand: number;
  units: Record<AgeBucket, number>;
  value: Record<AgeBucket, number>;
}

export const ageing = defineReport({
  name: 'ageing',
  summary: 'Units and value on hand per age bucket (0–30, 31–60, 61–90, over 90 days), first in first out',
  formula:
    'Units leave first in first out, so what is on hand is the newest inflows (receipts, returns, transfers in, positive counts and adjustments): walked newest first until they cover on_hand; age = days since the inflow. Value = units × the level’s moving average cost.',
  edgeRules: [
    'units older than 90 days are in 90+',
    'a level with nothing on hand is left out',
    'totals add unrounded values, then round',
  ],
  query: z.object(filterParams),
  cursor: reportCursor('ageing', z.tuple([textKey, textKey])),
  key: (row: AgeingRow) => [row.sku, row.location],
  columns: [
    { name: 'sku', value: (r: AgeingRow) => r.sku, text: true },
    { name: 'location', value: (r) => r.location, text: true },
    { name: 'currency', value: (r) => r.currency, text: true },
    { name: 'on_hand', value: (r) => r.onHand },
    ...ageBuckets.flatMap((b) => [
      { name: `units_${b}`, value: (r: AgeingRow) => r.units[b] },
      { name: `value_${b}`, value: (r: AgeingRow) => r.value[b] },
    ]),
  ],
  async run(db, query, page) {
    const { rows, totals } = await ageingAnswer(db, query.sku ?? {}, query.location, page);
    return {
      rows: inMemoryRows(rows, (r) => [r.sku, r.location], undefined, { sorted: true }),
      summary: { totals },
    };
  },
});

interface Live {
  /** The levels of skus with movements not compacted yet or a changed currency, as they are now. */
  states: Map<string, FoldedState>;
  layers: Map<string, Layer[]>;
  currencies: Map<string, string>;
  /** Their folded layers, states and the currency stock_fifo_days counts them under. */
  folded: { states: Map<string, FoldedState>; layers: Map<string, Layer[]>; currencies: Map<string, string> };
}

/** The live levels (stock-valuation.ts, liveStates) with their layers now and as folded. */
async function liveLevels(db: Knex, filter: SkuFilter): Promise<Live> {
  const live = await liveStates(db, filter);
  if (live.skus.length === 0) {
    const none = new Map();
    return {
      states: none,
      layers: none,
      currencies: none,
      folded: { states: none, layers: none, currencies: none },
    };
  }
  const foldedLayers = await loadLayers(db, { skus: live.skus });
  return {
    states: live.states,
    layers: await layersAfter(db, foldedLayers, live.pending, live.states),
    currencies: live.currencies,
    folded: { ...live.folded, layers: foldedLayers },
  };
}

interface Totals {
  currency: string;
  units: Record<AgeBucket, number>;
  value: Record<AgeBucket, number>;
}

const emptyBuckets = (): Record<AgeBucket, number> => ({ '0-30': 0, '31-60': 0, '61-90': 0, '90+': 0 });

/**
 * The answer: its rows after `after` (at most `limit`, all without) and totals per currency. Totals
 * come from the sums per currency and day (stock_fifo_days; with a sku or location filter, from the
 * layers of the filtered levels), corrected for the live levels: their folded part out, their part
 * now in.
 */
export async function ageingAnswer(
  db: Knex,
  filter: SkuFilter,
  location: string | undefined,
  page: { after?: KeyPart[]; limit?: number },
): Promise<{ rows: AgeingRow[]; totals: Totals[] }> {
  const today = dayOf(new Date());
  const live = await liveLevels(db, filter);
  const inFilter = (s: { location: string }) => location === undefined || s.location === location;
  const loc = location ?? null;

  const filtered = location !== undefined || filter.sku !== undefined || filter.skuPrefix !== undefined;
  const [where, bindings] = skuCondition(filter, 'l.sku');
  const { rows: days } = await db.raw<{ rows: DayPart[] }>(
    filtered
      ? `select c.currency, l.day::text as day, sum(l.units)::bigint as units,
                sum(l.units * (s.value / s.units)) as value
         from stock_fifo_layers l
         join stock_value_state s on s.sku = l.sku and s.location = l.location
         join stock_fifo_currency c on c.sku = l.sku
         where l.units > 0 and ${where} and (?::text is null or l.location = ?) group by 1, 2`
      : `select currency, day::text as day, units, value::float8 as value from stock_fifo_days`,
    filtered ? [...bindings, loc, loc] : [],
  );
  const parts: DayPart[] = [...days];
  for (const [key, state] of live.folded.states) {
    if (!inFilter(state)) continue;
    parts.push(
      ...dayParts(
        live.folded.currencies.get(state.sku) ?? 'XXX',
        live.folded.layers.get(key) ?? [],
        state,
        -1,
      ),
    );
  }
  for (const [key, state] of live.states) {
    if (!inFilter(state)) continue;
    parts.push(...dayParts(live.currencies.get(state.sku) ?? 'XXX', live.layers.get(key) ?? [], state, 1));
  }
  const totals = new Map<string, Totals>();
  const buckets = new Map<string, AgeBucket>();
  for (const p of parts) {
    const t = totals.get(p.currency) ?? {
      currency: p.currency,
      units: emptyBuckets(),
      value: emptyBuckets(),
    };
    let bucket = buckets.get(p.day);
    if (bucket === undefined) {
      bucket = ageBucketOf(ageDays(p.day, today));
      buckets.set(p.day, bucket);
    }
    t.units[bucket] += p.units;
    t.value[bucket] += p.value;
    totals.set(p.currency, t);
  }
  const shownTotals = [...totals.values()]
    .filter((t) => ageBuckets.some((b) => t.units[b] !== 0))
    .sort((a, b) => (a.currency < b.currency ? -1 : 1))
    .map((t) => ({
      currency: t.currency,
      units: t.units,
      value: Object.fromEntries(ageBuckets.map((b) => [b, shownMoney(t.value[b])])) as Record<
        AgeBucket,
        number
      >,
    }));

  // The page: folded levels holding units (an index range in key order), the live ones merged in.
  const after = page.after ?? ['', ''];
  const liveSkus = [...new Set([...live.states.values()].map((s) => s.sku))];
  const [stateWhere, stateBindings] = skuCondition(filter, 's.sku');
  const { rows: levels } = await db.raw<{ rows: (FoldedState & { currency: string })[] }>(
    `select s.sku, s.location, s.units, s.value, s.last_cost as "lastCost", p.price_currency as currency
     from stock_value_state s join products p on p.sku = s.sku
     where ${stateWhere} and (?::text is null or s.location = ?) and s.units > 0
       and (s.sku collate "C", s.location collate "C") > (?, ?) and not (s.sku = any(?))
     order by s.sku collate "C", s.location collate "C"
     ${page.limit !== undefined ? `limit ${Number(page.limit)}` : ''}`,
    [...stateBindings, loc, loc, after[0]!, after[1]!, liveSkus],
  );
  const foldedLayers = levels.length
    ? await loadLayers(db, { skus: [...new Set(levels.map((l) => l.sku))] })
    : new Map<string, Layer[]>();
  const row = (state: ValueState & { sku: string; location: string }, currency: string, layers: Layer[]) => {
    const units = ageLayers(layers, today);
    const average = currentCost(state);
    const value = Object.fromEntries(ageBuckets.map((b) => [b, shownMoney(units[b] * average)]));
    return {
      sku: state.sku,
      location: state.location,
      currency,
      onHand: state.units,
      units,
      value: value as Record<AgeBucket, number>,
    };
  };
  const rows: AgeingRow[] = levels.map((l) =>
    row(l, l.currency, foldedLayers.get(levelKey(l.sku, l.location)) ?? []),
  );
  for (const [key, state] of live.states) {
    const afterCursor =
      state.sku > String(after[0]) || (state.sku === after[0] && state.location > String(after[1]));
    if (state.units > 0 && inFilter(state) && afterCursor) {
      rows.push(row(state, live.currencies.get(state.sku) ?? 'XXX', live.layers.get(key) ?? []));
    }
  }
  rows.sort((a, b) =>
    a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : a.location < b.location ? -1 : a.location > b.location ? 1 : 0,
  );
  return { rows: page.limit !== undefined ? rows.slice(0, page.limit) : rows, totals: shownTotals };
}
