import type { Knex } from 'knex';
import { addToTotals, type FoldedState, type SkuFilter, skuCondition } from './ledger-replay.js';
import { coversOnTop, type Layer, newestCovering } from './rules.js';
import { currentCost, levelKey, type ValuedMovement, type ValueState } from './valuation.js';

/** A row of stock_fifo_layers. */
type LayerRow = { sku: string; location: string; day: string; units: number };

/**
 * FIFO layers (the newest inflows covering each level's units, per UTC day) and their sums per
 * currency and day: kept by compaction for the levels it folds, read by the `ageing` report, which
 * corrects them in memory for the movements not compacted yet (the one path both use).
 */

/** The movement kinds that do not change on_hand: never an inflow. */
const reservedOnly = new Set(['reserve', 'release']);

/** The folded layers of the filtered skus, by levelKey, newest first. */
export async function loadLayers(
  db: Knex,
  filter: SkuFilter | { skus: string[] } | { levels: { sku: string; location: string }[] },
): Promise<Map<string, Layer[]>> {
  const [where, bindings]: [string, Knex.RawBinding[]] =
    'levels' in filter
      ? [
          `(sku, location) in (select * from unnest(?::text[], ?::text[]))`,
          [filter.levels.map((l) => l.sku), filter.levels.map((l) => l.location)],
        ]
      : skuCondition(filter);
  const { rows } = await db.raw<{ rows: { sku: string; location: string; day: string; units: number }[] }>(
    `select sku, location, day::text as day, units from stock_fifo_layers where ${where}
     order by sku, location, day desc`,
    bindings,
  );
  const layers = new Map<string, Layer[]>();
  for (const r of rows) {
    const key = levelKey(r.sku, r.location);
    const list = layers.get(key) ?? [];
    list.push({ day: r.day, units: r.units });
    layers.set(key, list);
  }
  return layers;
}

/** The currency each sku's layers are counted under in stock_fifo_days. */
export async function loadLayerCurrencies(db: Knex, skus: string[]): Promise<Map<string, string>> {
  if (skus.length === 0) return new Map();
  const { rows } = await db.raw<{ rows: { sku: string; currency: string }[] }>(
    `select sku, currency from stock_fifo_currency where sku = any(?)`,
    [skus],
  );
  return new Map(rows.map((r) => [r.sku, r.currency]));
}

/** Inflows of movements per level (by levelKey) and UTC day. */
export function inflowsOf(movements: ValuedMovement[]): Map<string, Layer[]> {
  const inflows = new Map<string, Layer[]>();
  for (const m of movements) {
    if (m.delta <= 0 || reservedOnly.has(m.kind)) continue;
    const key = levelKey(m.sku, m.location);
    const list = inflows.get(key) ?? [];
    list.push({ day: m.createdAt.toISOString().slice(0, 10), units: m.delta });
    inflows.set(key, list);
  }
  return inflows;
}

/**
 * The layers of levels after movements: the newest of their folded layers and the movements' inflows
 * that cover the units the levels hold after them (`states`). A level with an inflow older than its
 * oldest layer (a backdated one) is covered from its inflows in the ledger instead: every row the
 * snapshot sees, or with `foldedOnly` those not waiting in stock_rollup_pending (compaction's).
 */
export async function layersAfter(
  db: Knex,
  folded: Map<string, Layer[]>,
  movements: ValuedMovement[],
  states: Map<string, ValueState & { sku: string; location: string }>,
  options: { foldedOnly?: boolean } = {},
): Promise<Map<string, Layer[]>> {
  const inflows = inflowsOf(movements);
  const after = new Map<string, Layer[]>();
  const backdated: { sku: string; location: string }[] = [];
  for (const [key, state] of states) {
    const layers = folded.get(key) ?? [];
    const added = inflows.get(key) ?? [];
    if (coversOnTop(layers, added)) after.set(key, newestCovering([...layers, ...added], state.units));
    else backdated.push(state);
  }
  if (backdated.length > 0) {
    const { rows } = await db.raw<{ rows: { sku: string; location: string; day: string; units: number }[] }>(
      `select m.sku, m.location, (m.created_at at time zone 'UTC')::date::text as day, sum(m.delta)::bigint as units
       from stock_movements m join unnest(?::text[], ?::text[]) as t (sku, location)
         on m.sku = t.sku and m.location = t.location
       where m.delta > 0 and m.kind not in ('reserve', 'release')
         ${options.foldedOnly ? 'and not exists (select 1 from stock_rollup_pending p where p.movement_id = m.id)' : ''}
       group by 1, 2, 3`,
      [backdated.map((b) => b.sku), backdated.map((b) => b.location)],
    );
    const ledger = new Map<string, Layer[]>();
    for (const r of rows) {
      const key = levelKey(r.sku, r.location);
      ledger.set(key, [...(ledger.get(key) ?? []), { day: r.day, units: r.units }]);
    }
    for (const b of backdated) {
      const key = levelKey(b.sku, b.location);
      after.set(key, newestCovering(ledger.get(key) ?? [], states.get(key)!.units));
    }
  }
  return after;
}

/** One level's part of stock_fifo_days: per day, its units and their value (units × its average cost). */
export interface DayPart {
  currency: string;
  day: string;
  units: number;
  value: number;
}

export const dayParts = (currency: string, layers: Layer[], state: ValueState, sign: 1 | -1): DayPart[] =>
  layers
    .filter((l) => l.units > 0)
    .map((l) => ({
      currency,
      day: l.day,
      units: sign * l.units,
      // units × average, as the migration computes it: taking it back later cancels exactly.
      value: sign * (l.units * currentCost(state)),
    }));

/**
 * A level's old parts (taken out) and new parts (added), less every pair that would cancel: the
 * same currency, day, units and value (computed alike from the same figures, so equal to the bit).
 * Most of a level's days are untouched by a fold; sending them only to cancel was most of the cost.
 */
function withoutCancelling(out: DayPart[], added: DayPart[]): DayPart[] {
  const taken = new Map(out.map((p) => [`${p.currency}|${p.day}`, p]));
  const kept: DayPart[] = [];
  for (const p of added) {
    const match = taken.get(`${p.currency}|${p.day}`);
    if (match && match.units === -p.units && match.value === -p.value) taken.delete(`${p.currency}|${p.day}`);
    else kept.push(p);
  }
  return [...taken.values(), ...kept];
}

/**
 * Compaction's part: the layers of the levels a fold touched, from their folded layers before it, the
 * movements folded and the states after; and their sums per currency and day (the old part taken
 * out, the new one added, summed in numeric so they cancel exactly).
 */
export async function writeLayers(
  db: Knex,
  input: {
    folded: ValuedMovement[];
    before: Map<string, FoldedState>;
    after: Map<string, FoldedState>;
    currencies: Map<string, string>;
  },
): Promise<void> {
  const skus = [...new Set([...input.after.values()].map((s) => s.sku))];
  if (skus.length === 0) return;
  const old = await loadLayers(db, { levels: [...input.after.values()] });
  const oldCurrencies = await loadLayerCurrencies(db, skus);
  const next = await layersAfter(db, old, input.folded, input.after, { foldedOnly: true });
  const parts: DayPart[] = [];
  // Only the layer rows that differ: a fold mostly adds to or eats into a level's newest days.
  const gone: LayerRow[] = [];
  const written: LayerRow[] = [];
  for (const [key, state] of input.after) {
    const before = input.before.get(key);
    const oldLayers = old.get(key) ?? [];
    const layers = next.get(key) ?? [];
    parts.push(
      ...withoutCancelling(
        before && oldLayers.length > 0
          ? dayParts(oldCurrencies.get(state.sku) ?? 'XXX', oldLayers, before, -1)
          : [],
        dayParts(input.currencies.get(state.sku) ?? 'XXX', layers, state, 1),
      ),
    );
    const held = new Map(oldLayers.map((l) => [l.day, l.units]));
    for (const l of layers) {
      if (held.get(l.day) !== l.units) written.push({ sku: state.sku, location: state.location, ...l });
      held.delete(l.day);
    }
    for (const day of held.keys()) gone.push({ sku: state.sku, location: state.location, day, units: 0 });
  }
  if (gone.length > 0) {
    await db.raw(
      `delete from stock_fifo_layers l using unnest(?::text[], ?::text[], ?::date[]) as t (sku, location, day)
       where l.sku = t.sku and l.location = t.location and l.day = t.day`,
      [gone.map((r) => r.sku), gone.map((r) => r.location), gone.map((r) => r.day)],
    );
  }
  if (written.length > 0) {
    await db.raw(
      `insert into stock_fifo_layers (sku, location, day, units)
       select * from unnest(?::text[], ?::text[], ?::date[], ?::bigint[])
       on conflict (sku, location, day) do update set units = excluded.units`,
      [
        written.map((r) => r.sku),
        written.map((r) => r.location),
        written.map((r) => r.day),
        written.map((r) => r.units),
      ],
    );
  }
  if (parts.length > 0) {
    await addToTotals(
      db,
      'stock_fifo_days',
      { column: 'day', type: 'date' },
      parts.map((p) => ({ currency: p.currency, key: p.day, units: p.units, value: p.value })),
    );
    await db.raw(`delete from stock_fifo_days where units = 0 and value = 0`);
  }
  await db.raw(
    `insert into stock_fifo_currency (sku, currency) select * from unnest(?::text[], ?::text[])
     on conflict (sku) do update set currency = excluded.currency`,
    [skus, skus.map((s) => input.currencies.get(s) ?? 'XXX')],
  );
}
