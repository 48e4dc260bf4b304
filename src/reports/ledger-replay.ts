import type { Knex } from 'knex';
import { byLedgerTime, createReplay, levelKey, type ValuedMovement, type ValueState } from './valuation.js';

/**
 * Reading the valuation state of levels and the movements to replay on top of it: the one path the
 * compaction job and the reports share, so what a report folds in memory is what compaction writes.
 */

export interface FoldedState extends ValueState {
  sku: string;
  location: string;
  /** Ledger time of the last movement folded in (created_at, id). */
  lastAt: Date;
  lastId: number;
}

interface StateRow {
  sku: string;
  location: string;
  units: number;
  value: number;
  last_cost: number | null;
  /** Epoch milliseconds: a number parses far faster than a timestamp's text. */
  last_at: number;
  last_id: number;
}

const toFolded = (r: StateRow): FoldedState => ({
  sku: r.sku,
  location: r.location,
  units: r.units,
  value: r.value,
  lastCost: r.last_cost,
  lastAt: new Date(r.last_at),
  lastId: r.last_id,
});

interface MovementRow {
  id: number;
  sku: string;
  location: string;
  kind: string;
  delta: number;
  unit_cost: number | null;
  job_id: string | null;
  created_at: number;
}

const toValued = (r: MovementRow): ValuedMovement => ({
  id: r.id,
  sku: r.sku,
  location: r.location,
  kind: r.kind,
  delta: r.delta,
  unitCost: r.unit_cost,
  jobId: r.job_id,
  createdAt: new Date(r.created_at),
});

/** Ledger time is created_at to the millisecond (a JS Date), then id; read as epoch milliseconds. */
const epochMs = (column: string) => `(extract(epoch from ${column}) * 1000)::float8`;
const stateColumns = `sku, location, units, value, last_cost, ${epochMs('last_at')} as last_at, last_id`;
// A job id only pairs a transfer's two legs.
const movementColumns = (id: string) => `${id} as id, sku, location, kind, delta, unit_cost,
  case when kind in ('transfer_in', 'transfer_out') then job_id end as job_id, ${epochMs('created_at')} as created_at`;

/** Which skus a read covers: all, one exactly, or a prefix. */
export interface SkuFilter {
  sku?: string;
  skuPrefix?: string;
}

/** SQL condition on a `sku` column for a filter (or a list of skus), with its bindings. */
export function skuCondition(
  filter: SkuFilter | { skus: string[] },
  column = 'sku',
): [string, Knex.RawBinding[]] {
  if ('skus' in filter) return [`${column} = any(?)`, [filter.skus]];
  if (filter.sku !== undefined) return [`${column} = ?`, [filter.sku]];
  if (filter.skuPrefix !== undefined) {
    // A range, not LIKE: the btree on sku serves it and no pattern character needs escaping.
    return [`${column} >= ? and ${column} < ?`, [filter.skuPrefix, `${filter.skuPrefix}\uffff`]];
  }
  return ['true', []];
}

/** Folded states of every level of the filtered skus (stock_value_state). */
export async function loadStates(db: Knex, filter: SkuFilter | { skus: string[] }): Promise<FoldedState[]> {
  const [where, bindings] = skuCondition(filter);
  const { rows } = await db.raw<{ rows: StateRow[] }>(
    `select ${stateColumns} from stock_value_state where ${where}`,
    bindings,
  );
  return rows.map(toFolded);
}

/**
 * Each level's state at the start of `period` (a month): the month ends of the month before once it
 * is closed (one row per level), else each level's latest snapshot before it.
 */
export async function loadSnapshotsBefore(
  db: Knex,
  period: string,
  filter: SkuFilter | { skus: string[] },
): Promise<FoldedState[]> {
  const [where, bindings] = skuCondition(filter);
  const { rows: closed } = await db.raw<{ rows: unknown[] }>(
    `select 1 from stock_value_periods where period = (?::date - interval '1 month')::date`,
    [period],
  );
  const { rows } =
    closed.length > 0
      ? await db.raw<{ rows: StateRow[] }>(
          `select ${stateColumns} from stock_value_month_ends
           where period = (?::date - interval '1 month')::date and ${where}`,
          [period, ...bindings],
        )
      : await db.raw<{ rows: StateRow[] }>(
          `select distinct on (sku, location) ${stateColumns}
           from stock_value_snapshots where period < ?::date and ${where}
           order by sku, location, period desc`,
          [period, ...bindings],
        );
  return rows.map(toFolded);
}

/**
 * Whether the day snapshots (stock_value_days) give every level's state at the start of `day`: they
 * are complete from a first day on (db/migrations/20261207020000_report_days_weeks.ts).
 */
export async function daySnapshotsCover(db: Knex, day: string): Promise<boolean> {
  const { rows } = await db.raw<{ rows: unknown[] }>(
    `select 1 from stock_value_days_from where day <= ?::date`,
    [day],
  );
  return rows.length > 0;
}

/**
 * The state at the start of `day` of each of `levels`: its latest day snapshot before it (one index
 * probe per level); a level without one held nothing then and is left out.
 */
export async function loadDayStates(
  db: Knex,
  day: string,
  levels: { sku: string; location: string }[],
): Promise<FoldedState[]> {
  if (levels.length === 0) return [];
  const { rows } = await db.raw<{ rows: StateRow[] }>(
    `select d.sku, d.location, d.units, d.value, d.last_cost, ${epochMs('d.last_at')} as last_at, d.last_id
     from unnest(?::text[], ?::text[]) l(sku, location)
     cross join lateral (
       select * from stock_value_days v where v.sku = l.sku and v.location = l.location and v.day < ?::date
       order by v.day desc limit 1
     ) d`,
    [levels.map((l) => l.sku), levels.map((l) => l.location), day],
  );
  return rows.map(toFolded);
}

/** Ledger movements with created_at in [from, until], in ledger time order. */
export async function ledgerMovements(
  db: Knex,
  range: { from: Date; until?: Date },
  filter: SkuFilter | { skus: string[] },
): Promise<ValuedMovement[]> {
  const [where, bindings] = skuCondition(filter);
  const { rows } = await db.raw<{ rows: MovementRow[] }>(
    `select ${movementColumns('id')} from stock_movements
     where created_at >= ? and (?::timestamptz is null or created_at <= ?) and ${where}
     order by created_at, id`,
    [range.from, range.until ?? null, range.until ?? null, ...bindings],
  );
  return rows.map(toValued);
}

/** Movements not compacted yet (a few seconds' worth while compaction runs), in ledger time order. */
export async function pendingMovements(
  db: Knex,
  filter: SkuFilter | { skus: string[] },
): Promise<ValuedMovement[]> {
  const [where, bindings] = skuCondition(filter);
  const { rows } = await db.raw<{ rows: MovementRow[] }>(
    `select ${movementColumns('movement_id')}
     from stock_rollup_pending where ${where}`,
    bindings,
  );
  return rows.map(toValued).sort(byLedgerTime);
}

/** The first day (UTC) of the month of an instant, as `YYYY-MM-01`. */
export const monthOf = (at: Date): string => `${at.toISOString().slice(0, 7)}-01`;
export const dayOf = (at: Date): string => at.toISOString().slice(0, 10);
/** The Monday (UTC) starting the week of a day `YYYY-MM-DD`, as `date_trunc('week', day)` gives it. */
export const weekOf = (day: string): string => {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() - ((d.getUTCDay() + 6) % 7));
  return d.toISOString().slice(0, 10);
};

/** The kinds that count as sales (abc, sell-through), and the units one counts: out, less returns in. */
export const salesKinds = ['sale', 'commit', 'return'];
export const netSold = (kind: string, unitsIn: number, unitsOut: number): number =>
  kind === 'return' ? -unitsIn : kind === 'sale' || kind === 'commit' ? unitsOut : 0;

const isBefore = (m: ValuedMovement, at: Date, id: number) =>
  m.createdAt.getTime() < at.getTime() || (m.createdAt.getTime() === at.getTime() && m.id < id);

export interface Fold {
  /** Every level of the skus folded, as folded after the movements (keyed by `levelKey`). */
  states: Map<string, FoldedState>;
  /** The keys of the levels whose state the fold changed: those moved, and those a rebuilt sku restarted. */
  changed: Set<string>;
  /** The movements applied, in ledger time order, each with its value. */
  applied: { movement: ValuedMovement; value: number; after: FoldedState }[];
  /** Skus rebuilt from a period snapshot (a movement landed before what was folded), by month. */
  rebuilt: Map<string, string>;
  /** The states the rebuilt skus restarted from (their levels at the start of that month). */
  restarted: FoldedState[];
}

/**
 * Folds movements onto the folded states of their skus. A sku whose new movements all come after
 * what was folded goes forward from its states; a sku with a backdated one (an earlier created_at:
 * a transaction that committed late) is replayed from its snapshot before that month, over the
 * whole ledger since, so later movements are revalued.
 */
export async function foldMovements(db: Knex, movements: ValuedMovement[]): Promise<Fold> {
  const bySku = new Map<string, ValuedMovement[]>();
  for (const m of movements) {
    const list = bySku.get(m.sku) ?? [];
    list.push(m);
    bySku.set(m.sku, list);
  }
  const skus = [...bySku.keys()];
  const states = new Map<string, FoldedState>();
  for (const s of skus.length ? await loadStates(db, { skus }) : [])
    states.set(levelKey(s.sku, s.location), s);
  // Each sku's levels (a scan of every state per sku would be quadratic in a run of thousands).
  const skuStates = new Map<string, FoldedState[]>();
  for (const s of states.values()) skuStates.set(s.sku, [...(skuStates.get(s.sku) ?? []), s]);
  const rebuilt = new Map<string, string>();
  for (const [sku, list] of bySku) {
    list.sort(byLedgerTime);
    const first = list[0]!;
    const late = (skuStates.get(sku) ?? []).some((s) => isBefore(first, s.lastAt, s.lastId));
    if (late) rebuilt.set(sku, monthOf(first.createdAt));
  }
  // Backdated skus, grouped by the month they restart from.
  const byMonth = new Map<string, string[]>();
  for (const [sku, month] of rebuilt) byMonth.set(month, [...(byMonth.get(month) ?? []), sku]);
  const toApply: ValuedMovement[] = [];
  const restarted: FoldedState[] = [];
  for (const [month, monthSkus] of byMonth) {
    for (const sku of monthSkus) {
      for (const s of skuStates.get(sku) ?? []) states.delete(levelKey(s.sku, s.location));
    }
    for (const s of await loadSnapshotsBefore(db, month, { skus: monthSkus })) {
      states.set(levelKey(s.sku, s.location), s);
      restarted.push(s);
    }
    toApply.push(
      ...(await ledgerMovements(db, { from: new Date(`${month}T00:00:00Z`) }, { skus: monthSkus })),
    );
  }
  for (const [sku, list] of bySku) if (!rebuilt.has(sku)) toApply.push(...list);
  toApply.sort(byLedgerTime);
  const replay = createReplay(states as Map<string, ValueState>);
  const applied = toApply.map((movement) => {
    const value = replay.apply(movement);
    const after: FoldedState = {
      ...replay.state(movement.sku, movement.location),
      sku: movement.sku,
      location: movement.location,
      lastAt: movement.createdAt,
      lastId: movement.id,
    };
    states.set(levelKey(movement.sku, movement.location), after);
    return { movement, value, after };
  });
  const changed = new Set(
    [...applied.map((a) => a.after), ...restarted].map((s) => levelKey(s.sku, s.location)),
  );
  return { states, changed, applied, rebuilt, restarted };
}

/**
 * Adds signed parts (units, value) into a totals table keyed by currency and one more text or date
 * column, summed in numeric so a part added and later taken back cancels exactly. Compaction keeps
 * stock_value_totals (per location) and stock_fifo_days (per receipt day) this way.
 */
export async function addToTotals(
  db: Knex,
  table: 'stock_value_totals' | 'stock_fifo_days',
  key: { column: 'location' | 'day'; type: 'text' | 'date' },
  parts: { currency: string; key: string; units: number; value: number }[],
): Promise<void> {
  if (parts.length === 0) return;
  await db.raw(
    `insert into ${table} (currency, ${key.column}, units, value)
     select currency, k, sum(units), sum(value::numeric)
     from unnest(?::text[], ?::${key.type}[], ?::bigint[], ?::float8[]) as p (currency, k, units, value)
     group by 1, 2
     on conflict (currency, ${key.column}) do update set units = ${table}.units + excluded.units,
       value = ${table}.value + excluded.value`,
    [
      parts.map((p) => p.currency),
      parts.map((p) => p.key),
      parts.map((p) => p.units),
      parts.map((p) => p.value),
    ],
  );
}
