import type { Knex } from 'knex';
import {
  dayOf,
  daySnapshotsCover,
  ledgerMovements,
  loadDayStates,
  loadSnapshotsBefore,
  monthOf,
  pendingMovements,
  type SkuFilter,
  skuCondition,
} from './ledger-replay.js';
import {
  byLevel,
  currenciesOf,
  type LevelValue,
  levelValue,
  type ValueTotal,
  valuationTotals,
  valueLevels,
} from './stock-valuation.js';
import { createReplay, levelKey, type ValueState } from './valuation.js';

/**
 * One page of the valuation as of `at`, and its totals, without replaying every level:
 * - totals: every level's state at the start of the month of `at` (its month end, one index range)
 *   plus the value the daily rollups recorded for the whole days since, in SQL; the skus that moved
 *   on the day of `at` itself replay that day up to `at` (the ledger by index) from each moved level's
 *   day snapshot before it (one index probe per level);
 * - the page: the levels in key order after the cursor (stock_value_state's index), each from its day
 *   snapshot over the ledger of that day up to `at`, a few pages at a time until the page is full;
 * - skus with movements not compacted yet at or before `at` are valued whole as `valueLevels` does
 *   (from their snapshot before the oldest of those) and take the place of their folded part.
 */
export async function valuationAtPage(
  db: Knex,
  query: { at: Date; filter: SkuFilter; location?: string },
  page: { after?: [string, string]; limit: number },
): Promise<{ levels: LevelValue[]; totals: ValueTotal[] }> {
  const { at, filter } = query;
  const loc = query.location ?? null;
  const inLocation = (s: { location: string }) => loc === null || s.location === loc;
  const month = monthOf(at);
  const monthStart = new Date(`${month}T00:00:00Z`);
  const dayStart = new Date(`${at.toISOString().slice(0, 10)}T00:00:00Z`);
  const touched = [
    ...new Set((await pendingMovements(db, filter)).filter((m) => m.createdAt <= at).map((m) => m.sku)),
  ];
  const touchedLevels = touched.length
    ? await valueLevels(db, { at, filter: { skus: touched }, location: query.location })
    : [];

  const fromDays = await daySnapshotsCover(db, dayOf(at));
  /**
   * States as of `at` of `levels` and of every level of `skus` that moved before it: from their day
   * snapshots over the ledger of the day of `at` (before the day snapshots are complete: from their
   * month snapshots over the month), with the value of each movement since `dayStart`.
   */
  const replayed = async (skus: string[], levels: { sku: string; location: string }[] = []) => {
    const from = fromDays ? dayStart : monthStart;
    const movements = await ledgerMovements(db, { from, until: at }, { skus });
    const states = new Map<string, ValueState>();
    const starts = fromDays
      ? await loadDayStates(db, dayOf(at), [
          ...new Map([...levels, ...movements].map((l) => [levelKey(l.sku, l.location), l])).values(),
        ])
      : await loadSnapshotsBefore(db, month, { skus });
    for (const s of starts) states.set(levelKey(s.sku, s.location), s);
    const replay = createReplay(states);
    const values: { sku: string; location: string; units: number; value: number }[] = [];
    for (const m of movements) {
      const value = replay.apply(m);
      if (m.createdAt >= dayStart && !['reserve', 'release'].includes(m.kind)) {
        values.push({ sku: m.sku, location: m.location, units: m.delta, value });
      }
    }
    return { states, values };
  };

  // Totals: month start states + whole days from the rollups + the day of `at` replayed.
  const [where, bindings] = skuCondition(filter, 's.sku');
  const closed = await db.raw<{ rows: unknown[] }>(
    `select 1 from stock_value_periods where period = (?::date - interval '1 month')::date`,
    [month],
  );
  const starts =
    closed.rows.length > 0
      ? `select sku, location, units, value from stock_value_month_ends
         where period = (?::date - interval '1 month')::date`
      : `(select distinct on (sku, location) sku, location, units, value from stock_value_snapshots
         where period < ?::date order by sku, location, period desc)`;
  const { rows: sums } = await db.raw<{ rows: (ValueTotal & { location: string })[] }>(
    `select p.price_currency as currency, s.location, sum(s.units)::bigint as units, sum(s.value) as value
     from (
       ${starts}
       union all
       select sku, location, units_in - units_out, value_in - value_out from stock_daily
       where day >= ?::date and day < ?::date and kind not in ('reserve', 'release')
     ) s join products p on p.sku = s.sku
     where ${where} and (?::text is null or s.location = ?) and not (s.sku = any(?))
     group by 1, 2`,
    // The day as text: a Date bound to `?::date` is sent in the Node process's zone (its day may be the one before).
    [month, month, dayOf(at), ...bindings, loc, loc, touched],
  );
  const [ledgerWhere, ledgerBindings] = skuCondition(filter);
  const { rows: movedToday } = await db.raw<{ rows: { sku: string }[] }>(
    `select distinct sku from stock_movements where created_at >= ? and created_at <= ? and ${ledgerWhere}`,
    [dayStart, at, ...ledgerBindings],
  );
  const today = movedToday.map((r) => r.sku).filter((sku) => !touched.includes(sku));
  const parts: LevelValue[] = sums.map((t) => ({ sku: '', ...t }));
  if (today.length > 0) {
    const currencies = await currenciesOf(db, { skus: today });
    for (const v of (await replayed(today)).values) {
      if (inLocation(v)) parts.push(levelValue(v, currencies));
    }
  }
  parts.push(...touchedLevels);
  const totals = valuationTotals(parts).filter((t) => t.units !== 0 || Math.abs(t.value) >= 1e-6);

  // The page: levels in key order, replayed a few pages at a time.
  const levels: LevelValue[] = [];
  const [stateWhere, stateBindings] = skuCondition(filter, 's.sku');
  let after = page.after ?? ['', ''];
  const chunk = Math.max(50, 2 * page.limit);
  for (;;) {
    const { rows: candidates } = await db.raw<{ rows: { sku: string; location: string }[] }>(
      `select s.sku, s.location from stock_value_state s
       where ${stateWhere} and (?::text is null or s.location = ?)
         and (s.sku collate "C", s.location collate "C") > (?, ?) and not (s.sku = any(?))
       order by s.sku collate "C", s.location collate "C" limit ?`,
      [...stateBindings, loc, loc, after[0], after[1], touched, chunk],
    );
    if (candidates.length === 0) break;
    const skus = [...new Set(candidates.map((c) => c.sku))];
    const { states } = await replayed(skus, candidates);
    const currencies = await currenciesOf(db, { skus });
    for (const c of candidates) {
      const s = states.get(levelKey(c.sku, c.location));
      if (s && (s.units !== 0 || s.value !== 0)) levels.push(levelValue({ ...c, ...s }, currencies));
    }
    const last = candidates[candidates.length - 1]!;
    after = [last.sku, last.location];
    if (levels.length >= page.limit || candidates.length < chunk) break;
  }
  const [afterSku, afterLocation] = page.after ?? ['', ''];
  const fromTouched = touchedLevels.filter(
    (l) => l.sku > afterSku || (l.sku === afterSku && l.location > afterLocation),
  );
  return { levels: [...levels, ...fromTouched].sort(byLevel).slice(0, page.limit), totals };
}
