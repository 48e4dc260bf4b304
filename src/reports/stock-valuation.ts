import type { Knex } from 'knex';
import { loadLayerCurrencies } from './fifo-layers.js';
import {
  addToTotals,
  type FoldedState,
  foldMovements,
  ledgerMovements,
  loadSnapshotsBefore,
  loadStates,
  monthOf,
  pendingMovements,
  type SkuFilter,
  skuCondition,
} from './ledger-replay.js';
import { byLedgerTime, createReplay, levelKey, type ValuedMovement, type ValueState } from './valuation.js';

export interface LevelValue {
  sku: string;
  location: string;
  currency: string;
  units: number;
  /** Unrounded: rounded only when shown. */
  value: number;
}

/**
 * The moving-average value of every level of the filtered skus, now or as of `at`:
 * - now: the folded states (stock_value_state) with the movements not compacted yet folded on top;
 * - as of `at`: each level's snapshot before the month of `at`, then the ledger from the start of
 *   that month to `at` (one month at most). A sku with a movement not compacted yet from before
 *   that month starts from the snapshot before that movement's month instead.
 * Levels with no units and no value are left out. Sorted by sku, location.
 */
export async function valueLevels(
  db: Knex,
  query: { at?: Date; filter: SkuFilter | { skus: string[] }; location?: string },
): Promise<LevelValue[]> {
  // Keyed by levelKey(sku, location): the level is read back from its key.
  const states = new Map<string, ValueState>();
  const pending = await pendingMovements(db, query.filter);
  if (!query.at) {
    for (const s of await loadStates(db, query.filter)) states.set(levelKey(s.sku, s.location), s);
    const fold = await foldMovements(db, pending);
    for (const sku of fold.rebuilt.keys()) {
      for (const key of states.keys()) if (key.startsWith(`${sku}\u0000`)) states.delete(key);
    }
    for (const [key, s] of fold.states) states.set(key, s);
  } else {
    const at = query.at;
    const month = monthOf(at);
    // Skus whose uncompacted movements reach back before the month: restart them earlier.
    const restart = new Map<string, string>();
    for (const m of pending) {
      const own = monthOf(m.createdAt);
      if (own < month && own < (restart.get(m.sku) ?? month)) restart.set(m.sku, own);
    }
    const movements: ValuedMovement[] = [];
    for (const s of await loadSnapshotsBefore(db, month, query.filter)) {
      if (!restart.has(s.sku)) states.set(levelKey(s.sku, s.location), s);
    }
    for (const m of await ledgerMovements(
      db,
      { from: new Date(`${month}T00:00:00Z`), until: at },
      query.filter,
    )) {
      if (!restart.has(m.sku)) movements.push(m);
    }
    const byMonth = new Map<string, string[]>();
    for (const [sku, own] of restart) byMonth.set(own, [...(byMonth.get(own) ?? []), sku]);
    for (const [own, skus] of byMonth) {
      for (const s of await loadSnapshotsBefore(db, own, { skus }))
        states.set(levelKey(s.sku, s.location), s);
      movements.push(
        ...(await ledgerMovements(db, { from: new Date(`${own}T00:00:00Z`), until: at }, { skus })),
      );
    }
    const replay = createReplay(states);
    for (const m of movements.sort(byLedgerTime)) replay.apply(m);
  }
  const currencies = await currenciesOf(db, query.filter);
  const levels: LevelValue[] = [];
  for (const [key, s] of states) {
    const [sku, location] = key.split('\u0000') as [string, string];
    if ((query.location !== undefined && location !== query.location) || (s.units === 0 && s.value === 0))
      continue;
    levels.push(levelValue({ sku, location, units: s.units, value: s.value }, currencies));
  }
  return levels.sort(byLevel);
}

export const levelValue = (
  s: { sku: string; location: string; units: number; value: number },
  currencies: Map<string, string>,
): LevelValue => ({
  sku: s.sku,
  location: s.location,
  currency: currencies.get(s.sku) ?? 'XXX',
  units: s.units,
  value: s.value,
});

/** (sku, location) order, as JS compares text (code points, like collate "C"). */
export const byLevel = (a: { sku: string; location: string }, b: { sku: string; location: string }) =>
  a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : a.location < b.location ? -1 : a.location > b.location ? 1 : 0;

/** The currency of each product (its price's): costs are in the product's currency. */
export async function currenciesOf(
  db: Knex,
  filter: SkuFilter | { skus: string[] },
): Promise<Map<string, string>> {
  const [where, bindings] = skuCondition(filter);
  const { rows } = await db.raw<{ rows: { sku: string; currency: string }[] }>(
    `select sku, price_currency as currency from products where ${where}`,
    bindings,
  );
  return new Map(rows.map((r) => [r.sku, r.currency]));
}

export interface ValueTotal {
  currency: string;
  location: string | null;
  units: number;
  value: number;
}

/** Totals per location and currency, then per currency over every location (`location` null). */
export function valuationTotals(levels: LevelValue[]): ValueTotal[] {
  const totals = new Map<string, ValueTotal>();
  for (const l of levels) {
    for (const location of [l.location, null]) {
      const key = `${l.currency}\u0000${location ?? ''}`;
      const t = totals.get(key) ?? { currency: l.currency, location, units: 0, value: 0 };
      t.units += l.units;
      t.value += l.value;
      totals.set(key, t);
    }
  }
  return [...totals.values()].sort(
    (a, b) =>
      a.currency.localeCompare(b.currency) ||
      (a.location === null ? 1 : b.location === null ? -1 : a.location.localeCompare(b.location)),
  );
}

/**
 * The levels whose folded state does not tell the answer, as they are now: skus with movements not
 * compacted yet (folded in memory on top of their states) and skus whose product changed currency
 * since they were counted (stock_fifo_recount). With their folded states and the currency the
 * maintained sums (stock_value_totals, stock_fifo_days) count them under, so a reader takes their
 * folded part out and puts their part now in. Shared by the valuation and the ageing report.
 */
export async function liveStates(
  db: Knex,
  filter: SkuFilter,
): Promise<{
  pending: ValuedMovement[];
  skus: string[];
  states: Map<string, FoldedState>;
  currencies: Map<string, string>;
  folded: { states: Map<string, FoldedState>; currencies: Map<string, string> };
}> {
  const pending = await pendingMovements(db, filter);
  const [where, bindings] = skuCondition(filter);
  const { rows: moved } = await db.raw<{ rows: { sku: string }[] }>(
    `select sku from stock_fifo_recount where ${where}`,
    bindings,
  );
  const skus = [...new Set([...pending.map((m) => m.sku), ...moved.map((r) => r.sku)])];
  if (skus.length === 0) {
    const none = new Map();
    return { pending, skus, states: none, currencies: none, folded: { states: none, currencies: none } };
  }
  const foldedStates = new Map((await loadStates(db, { skus })).map((s) => [levelKey(s.sku, s.location), s]));
  const fold = await foldMovements(db, pending);
  const states = new Map(foldedStates);
  for (const [key, s] of fold.states) states.set(key, s);
  return {
    pending,
    skus,
    states,
    currencies: await currenciesOf(db, { skus }),
    folded: { states: foldedStates, currencies: await loadLayerCurrencies(db, skus) },
  };
}

/**
 * One page of the current valuation and the totals, without reading every level: the page is an
 * index range of the folded states, the totals the maintained sums per currency and location
 * (stock_value_totals; with a sku filter, the filtered states summed); the live levels (movements
 * not compacted yet, a changed currency) replace their skus' levels in the page and their folded
 * part in the totals.
 */
export async function currentValuationPage(
  db: Knex,
  query: { filter: SkuFilter; location?: string },
  page: { after?: [string, string]; limit: number },
): Promise<{ levels: LevelValue[]; totals: ValueTotal[] }> {
  const live = await liveStates(db, query.filter);
  const inFilter = (s: { location: string }) => query.location === undefined || s.location === query.location;
  const [where, bindings] = skuCondition(query.filter, 's.sku');
  const loc = query.location ?? null;
  const filtered = query.filter.sku !== undefined || query.filter.skuPrefix !== undefined;
  const { rows: totalRows } = await db.raw<{ rows: ValueTotal[] }>(
    filtered
      ? `select c.currency, s.location, sum(s.units)::bigint as units, sum(s.value) as value
         from stock_value_state s join stock_fifo_currency c on c.sku = s.sku
         where ${where} and (?::text is null or s.location = ?) group by 1, 2`
      : `select currency, location, units, value::float8 as value from stock_value_totals
         where ?::text is null or location = ?`,
    filtered ? [...bindings, loc, loc] : [loc, loc],
  );
  const adjust = new Map<string, ValueTotal>(totalRows.map((t) => [`${t.currency}\u0000${t.location}`, t]));
  const change = (currency: string, s: { location: string; units: number; value: number }, sign: number) => {
    if (!inFilter(s)) return;
    const key = `${currency}\u0000${s.location}`;
    const t = adjust.get(key) ?? { currency, location: s.location, units: 0, value: 0 };
    t.units += sign * s.units;
    t.value += sign * s.value;
    adjust.set(key, t);
  };
  for (const s of live.folded.states.values()) change(live.folded.currencies.get(s.sku) ?? 'XXX', s, -1);
  for (const s of live.states.values()) change(live.currencies.get(s.sku) ?? 'XXX', s, 1);
  const byLocation = [...adjust.values()]
    .filter((t) => t.units !== 0 || t.value !== 0)
    .map((t) => ({
      sku: '',
      location: t.location!,
      currency: t.currency,
      units: t.units,
      value: t.value,
    }));
  const after = page.after ?? ['', ''];
  const { rows } = await db.raw<{ rows: LevelValue[] }>(
    `select s.sku, s.location, p.price_currency as currency, s.units, s.value
     from stock_value_state s join products p on p.sku = s.sku
     where ${where} and (?::text is null or s.location = ?) and (s.units <> 0 or s.value <> 0)
       and (s.sku collate "C", s.location collate "C") > (?, ?) and not (s.sku = any(?))
     order by s.sku collate "C", s.location collate "C" limit ?`,
    [...bindings, loc, loc, after[0], after[1], live.skus, page.limit],
  );
  const fromLive = [...live.states.values()]
    .filter(
      (s) =>
        inFilter(s) &&
        (s.units !== 0 || s.value !== 0) &&
        (s.sku > after[0] || (s.sku === after[0] && s.location > after[1])),
    )
    .map((s) => levelValue(s, live.currencies));
  const levels = [...rows, ...fromLive].sort(byLevel).slice(0, page.limit);
  return { levels, totals: valuationTotals(byLocation) };
}

/**
 * Compaction's part of stock_value_totals: the folded states of the levels it touched summed per
 * currency and location, their part before taken out (under the currency they were counted in,
 * stock_fifo_currency: call before writeLayers records the new one) and their part after put in,
 * summed in numeric so what is added and later taken back cancels exactly.
 */
export async function writeValueTotals(
  db: Knex,
  input: {
    before: Map<string, FoldedState>;
    after: Map<string, FoldedState>;
    currencies: Map<string, string>;
  },
): Promise<void> {
  const skus = [...new Set([...input.after.values()].map((s) => s.sku))];
  if (skus.length === 0) return;
  const counted = await loadLayerCurrencies(db, skus);
  const parts = [
    ...[...input.before.values()].map((s) => ({ currency: counted.get(s.sku) ?? 'XXX', s, sign: -1 })),
    ...[...input.after.values()].map((s) => ({ currency: input.currencies.get(s.sku) ?? 'XXX', s, sign: 1 })),
  ];
  await addToTotals(
    db,
    'stock_value_totals',
    { column: 'location', type: 'text' },
    parts.map((p) => ({
      currency: p.currency,
      key: p.s.location,
      units: p.sign * p.s.units,
      value: p.sign * p.s.value,
    })),
  );
}
