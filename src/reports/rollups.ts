import type { Knex } from 'knex';
import { writeLayers } from './fifo-layers.js';
import {
  dayOf,
  type Fold,
  type FoldedState,
  foldMovements,
  loadStates,
  monthOf,
  netSold,
  pendingMovements,
  weekOf,
} from './ledger-replay.js';
import { currenciesOf, writeValueTotals } from './stock-valuation.js';
import { levelKey, type ValuedMovement } from './valuation.js';

/**
 * Compaction: folds the ledger rows the rollup trigger queued (`stock_rollup_pending`) into the
 * daily rollups and weekly sales, the level states and their totals (stock-valuation.ts), the month and day snapshots and the
 * FIFO layers (fifo-layers.ts), and
 * deletes them, all in one transaction, so a reader sees every movement exactly once: folded, or still pending. Runs as the
 * `maintenance.compact-reports` scheduler; one run at a time (an advisory lock: a second one returns
 * at once). A run takes whole skus (every pending row of each), at most `maxSkus`, so a transfer's
 * two legs are always folded together.
 */
export async function compactRollups(db: Knex, options: { maxSkus?: number } = {}): Promise<CompactionRun> {
  return db.transaction(async (trx) => {
    const { rows: locked } = await trx.raw<{ rows: { locked: boolean }[] }>(
      `select pg_try_advisory_xact_lock(hashtext('stockflow.rollups')) as locked`,
    );
    if (!locked[0]!.locked) return { movements: 0, skus: 0, rebuilt: 0, skipped: true, deferred: false };
    const { rows } = await trx.raw<{ rows: { sku: string }[] }>(
      `select distinct sku from stock_rollup_pending limit ?`,
      [options.maxSkus ?? 2000],
    );
    const skus = rows.map((r) => r.sku);
    // Products whose currency changed: their layers move to it (taken before their currency is read).
    const { rows: recount } = await trx.raw<{ rows: { sku: string }[] }>(
      `delete from stock_fifo_recount where sku in (select sku from stock_fifo_recount limit ?) returning sku`,
      [options.maxSkus ?? 2000],
    );
    if (skus.length === 0 && recount.length === 0)
      return { movements: 0, skus: 0, rebuilt: 0, skipped: false, deferred: false };
    // Read what the deletion removes: rows committed after this snapshot stay for the next run.
    const pending = await pendingMovements(trx, { skus });
    await trx.raw(`delete from stock_rollup_pending where movement_id = any(?)`, [pending.map((m) => m.id)]);
    const layered = [...new Set([...skus, ...recount.map((r) => r.sku)])];
    const before = new Map(
      (await loadStates(trx, { skus: layered })).map((s) => [levelKey(s.sku, s.location), s]),
    );
    const fold = await foldMovements(trx, pending);
    await writeFold(trx, fold);
    // Only the levels this run changes: those the fold changed, and every level of a sku now counted
    // under another currency. The others' totals and FIFO layers stand (rewriting every level of
    // each sku moved made compaction cost about 40 % of the inventory worker's throughput).
    const recounted = new Set(recount.map((r) => r.sku));
    const changes = (key: string, sku: string) => fold.changed.has(key) || recounted.has(sku);
    const changedBefore = new Map([...before].filter(([key, s]) => changes(key, s.sku)));
    const after = new Map(changedBefore);
    for (const [key, s] of fold.states) if (changes(key, s.sku)) after.set(key, s);
    const currencies = await currenciesOf(trx, { skus: layered });
    // Before writeLayers: it records the currency each sku is now counted under.
    await writeValueTotals(trx, { before: changedBefore, after, currencies });
    await writeLayers(trx, { folded: pending, before: changedBefore, after, currencies });
    await refreshMonthEnds(trx, fold);
    await closeMonths(trx);
    return {
      movements: pending.length,
      skus: skus.length,
      rebuilt: fold.rebuilt.size,
      skipped: false,
      deferred: false,
    };
  });
}

/**
 * How long after a month ends it is closed: a transaction that started before the end commits
 * within the worker's statement and idle timeouts (a minute), so its rows are in by then.
 */
const monthCloseGraceMs = 10 * 60_000;

const nextMonth = (period: string) => {
  const d = new Date(`${period}T00:00:00Z`);
  d.setUTCMonth(d.getUTCMonth() + 1);
  return d.toISOString().slice(0, 10);
};

/**
 * Closes every month that is over (past the grace) and has no row left to fold: writes each level's
 * state at its end into stock_value_month_ends (its latest snapshot up to that month), so `?at=`
 * reads one row per level instead of searching each level's snapshots.
 */
async function closeMonths(db: Knex): Promise<void> {
  const { rows } = await db.raw<{ rows: { last: string | null }[] }>(
    `select max(period)::text as last from stock_value_periods`,
  );
  // The first month is searched for only until one is closed (a scan of every snapshot).
  let period = rows[0]!.last
    ? nextMonth(rows[0]!.last)
    : (
        await db.raw<{ rows: { first: string | null }[] }>(
          `select min(period)::text as first from stock_value_snapshots`,
        )
      ).rows[0]!.first;
  while (period && Date.parse(`${nextMonth(period)}T00:00:00Z`) + monthCloseGraceMs < Date.now()) {
    const end = nextMonth(period);
    // The instant the month ends (UTC): a `?::date` would end it at midnight in the session's TimeZone.
    const { rows: waiting } = await db.raw<{ rows: unknown[] }>(
      `select 1 from stock_rollup_pending where created_at < ? limit 1`,
      [new Date(`${end}T00:00:00Z`)],
    );
    if (waiting.length > 0) return;
    await db.raw(
      `insert into stock_value_month_ends (period, sku, location, units, value, last_cost, last_at, last_id)
       select distinct on (sku, location) ?::date, sku, location, units, value, last_cost, last_at, last_id
       from stock_value_snapshots where period <= ?::date order by sku, location, period desc`,
      [period, period],
    );
    await db.raw(`insert into stock_value_periods (period) values (?)`, [period]);
    period = end;
  }
}

/** Closed months a fold reached back into (a backdated row, a late commit) get their month ends again. */
async function refreshMonthEnds(db: Knex, fold: Fold): Promise<void> {
  const { rows } = await db.raw<{ rows: { last: string | null }[] }>(
    `select max(period)::text as last from stock_value_periods`,
  );
  const lastClosed = rows[0]!.last;
  if (!lastClosed) return;
  const earliest = new Map<string, string>();
  for (const { movement } of fold.applied) {
    const month = monthOf(movement.createdAt);
    if (month <= lastClosed && month < (earliest.get(movement.sku) ?? '9999'))
      earliest.set(movement.sku, month);
  }
  for (const [sku, month] of earliest) {
    await db.raw(`delete from stock_value_month_ends where sku = ? and period >= ?::date`, [sku, month]);
    await db.raw(
      `insert into stock_value_month_ends (period, sku, location, units, value, last_cost, last_at, last_id)
       select p.period, s.sku, s.location, s.units, s.value, s.last_cost, s.last_at, s.last_id
       from stock_value_periods p cross join lateral (
         select distinct on (location) sku, location, units, value, last_cost, last_at, last_id
         from stock_value_snapshots where sku = ? and period <= p.period order by location, period desc
       ) s where p.period >= ?::date`,
      [sku, month],
    );
  }
}

/** What a run of `maintenance.compact-reports` did. */
export interface CompactionRun {
  movements: number;
  skus: number;
  rebuilt: number;
  /** Another run held the lock. */
  skipped: boolean;
  /** It gave way to the inventory workers (`compactPaced`). */
  deferred: boolean;
}

/**
 * The scheduled run: gives way to a backlog of inventory jobs. Folding costs 0.15 to 0.3 ms of CPU per
 * movement, spent in the worker and Postgres the inventory jobs need; under a burst it would take
 * that from them, and reports stay exact with rows pending (they fold them as they read), so the run
 * waits while `inventoryReady()` jobs are at least `yieldAtReady` (0: never) — but not once the
 * oldest pending row is `maxLagMs` old: then it runs whatever the backlog, so a sustained load
 * cannot let the pending rows (and what each report folds as it reads) grow without bound.
 */
export async function compactPaced(
  db: Knex,
  options: {
    maxSkus?: number;
    yieldAtReady: number;
    maxLagMs: number;
    inventoryReady: () => Promise<number>;
  },
): Promise<CompactionRun> {
  if (options.yieldAtReady > 0 && (await options.inventoryReady()) >= options.yieldAtReady) {
    const { rows } = await db.raw<{ rows: { lag_ms: number | null }[] }>(
      `select (extract(epoch from now() - min(created_at)) * 1000)::float8 as lag_ms from stock_rollup_pending`,
    );
    const lag = rows[0]!.lag_ms;
    if (lag !== null && lag < options.maxLagMs)
      return { movements: 0, skus: 0, rebuilt: 0, skipped: false, deferred: true };
  }
  return compactRollups(db, options);
}

/** Compacts until nothing is pending (a backfill: after a bulk load, in the benchmark and tests). */
export async function compactAllPending(db: Knex, maxSkus = 5000): Promise<number> {
  let movements = 0;
  for (;;) {
    const run = await compactRollups(db, { maxSkus });
    movements += run.movements;
    if (run.skus === 0 && !run.skipped) return movements;
  }
}

interface DailyFigures {
  units_in: number;
  units_out: number;
  value_in: number;
  value_out: number;
  movements: number;
}

const zero = (): DailyFigures => ({ units_in: 0, units_out: 0, value_in: 0, value_out: 0, movements: 0 });

function addTo(
  map: Map<string, DailyFigures>,
  key: string,
  m: ValuedMovement,
  value: number,
  sign = 1,
): void {
  const figures = map.get(key) ?? zero();
  if (m.delta > 0) {
    figures.units_in += sign * m.delta;
    figures.value_in += sign * value;
  } else {
    figures.units_out -= sign * m.delta;
    figures.value_out -= sign * value;
  }
  figures.movements += sign;
  map.set(key, figures);
}

const sep = '\u0000';

/**
 * Writes a fold: daily rows (added to, or rebuilt from the month a backdated sku restarted at), their
 * totals and weekly sales (the rebuilt days taken out, the replay added), month and day snapshots, states.
 */
async function writeFold(db: Knex, fold: Fold): Promise<void> {
  const daily = new Map<string, DailyFigures>();
  const totals = new Map<string, DailyFigures>();
  const weekly = new Map<string, number>();
  for (const [sku, month] of fold.rebuilt) {
    // Take out what this sku added since the month it restarts from; the replay adds it back.
    const { rows } = await db.raw<{
      rows: ({ location: string; day: string; kind: string } & DailyFigures)[];
    }>(
      `delete from stock_daily where sku = ? and day >= ?::date
       returning location, day::text as day, kind, units_in, units_out, value_in, value_out, movements`,
      [sku, month],
    );
    for (const r of rows) {
      addSales(weekly, sku, r.day, -netSold(r.kind, r.units_in, r.units_out));
      const key = [r.location, r.day, r.kind].join(sep);
      const t = totals.get(key) ?? zero();
      t.units_in -= r.units_in;
      t.units_out -= r.units_out;
      t.value_in -= r.value_in;
      t.value_out -= r.value_out;
      t.movements -= r.movements;
      totals.set(key, t);
    }
    await db.raw(`delete from stock_value_snapshots where sku = ? and period >= ?::date`, [sku, month]);
    await db.raw(`delete from stock_value_days where sku = ? and day >= ?::date`, [sku, month]);
  }
  // The states a rebuilt sku restarted from stay on the day they were reached (a level that does not
  // move again still has its state there: the first snapshots after the migration are only these).
  const days = new Map<string, FoldedState>();
  for (const s of fold.restarted) days.set([s.sku, s.location, dayOf(s.lastAt)].join(sep), s);
  const snapshots = new Map<string, (typeof fold.applied)[number]['after']>();
  for (const { movement: m, value, after } of fold.applied) {
    const day = dayOf(m.createdAt);
    addTo(daily, [m.sku, m.location, day, m.kind].join(sep), m, value);
    addTo(totals, [m.location, day, m.kind].join(sep), m, value);
    addSales(weekly, m.sku, day, netSold(m.kind, Math.max(m.delta, 0), Math.max(-m.delta, 0)));
    snapshots.set([m.sku, m.location, monthOf(m.createdAt)].join(sep), after);
    days.set([m.sku, m.location, day].join(sep), after);
  }
  await upsertDaily(db, 'stock_daily', ['sku', 'location', 'day', 'kind'], daily);
  await upsertDaily(db, 'stock_daily_totals', ['location', 'day', 'kind'], totals);
  if (weekly.size > 0) {
    const keys = [...weekly.keys()].map((k) => k.split(sep));
    await db.raw(
      `insert into stock_sales_weekly (sku, week, net)
       select * from unnest(?::text[], ?::date[], ?::bigint[])
       on conflict (week, sku) do update set net = stock_sales_weekly.net + excluded.net`,
      [keys.map((k) => k[0]!), keys.map((k) => k[1]!), [...weekly.values()]] as Knex.RawBinding[],
    );
  }
  await upsertStates(
    db,
    'stock_value_snapshots',
    [...snapshots].map(([key, s]) => ({ ...s, period: key.split(sep)[2]! })),
  );
  await upsertStates(
    db,
    'stock_value_days',
    [...days].map(([key, s]) => ({ ...s, period: key.split(sep)[2]! })),
  );
  // Only the levels it changed: the others' rows already hold their states.
  await upsertStates(
    db,
    'stock_value_state',
    [...fold.states].filter(([key]) => fold.changed.has(key)).map(([, s]) => s),
  );
}

/** Adds net units sold to a sku's week (stock_sales_weekly). */
function addSales(weekly: Map<string, number>, sku: string, day: string, net: number): void {
  if (net === 0) return;
  const key = [sku, weekOf(day)].join(sep);
  weekly.set(key, (weekly.get(key) ?? 0) + net);
}

async function upsertDaily(
  db: Knex,
  table: 'stock_daily' | 'stock_daily_totals',
  keys: string[],
  rows: Map<string, DailyFigures>,
): Promise<void> {
  if (rows.size === 0) return;
  const parts = [...rows.keys()].map((k) => k.split(sep));
  const figures = [...rows.values()];
  const keyTypes = keys.map((k) => (k === 'day' ? 'date' : 'text'));
  const columns = [...keys, 'units_in', 'units_out', 'value_in', 'value_out', 'movements'];
  const add = ['units_in', 'units_out', 'value_in', 'value_out', 'movements']
    .map((c) => `${c} = ${table}.${c} + excluded.${c}`)
    .join(', ');
  await db.raw(
    `insert into ${table} (${columns.join(', ')})
     select * from unnest(${keyTypes.map((t) => `?::${t}[]`).join(', ')},
                          ?::bigint[], ?::bigint[], ?::float8[], ?::float8[], ?::int[])
     on conflict (${keys.join(', ')}) do update set ${add}`,
    [
      ...keys.map((_, i) => parts.map((p) => p[i]!)),
      figures.map((f) => f.units_in),
      figures.map((f) => f.units_out),
      figures.map((f) => f.value_in),
      figures.map((f) => f.value_out),
      figures.map((f) => f.movements),
    ] as Knex.RawBinding[],
  );
}

async function upsertStates(
  db: Knex,
  table: 'stock_value_state' | 'stock_value_snapshots' | 'stock_value_days',
  rows: {
    sku: string;
    location: string;
    units: number;
    value: number;
    lastCost: number | null;
    lastAt: Date;
    lastId: number;
    period?: string;
  }[],
): Promise<void> {
  if (rows.length === 0) return;
  const snapshot = table !== 'stock_value_state';
  const period = table === 'stock_value_days' ? 'day' : 'period';
  const keys = snapshot ? `sku, location, ${period}` : 'sku, location';
  await db.raw(
    `insert into ${table} (sku, location, ${snapshot ? `${period}, ` : ''}units, value, last_cost, last_at, last_id)
     select * from unnest(?::text[], ?::text[], ${snapshot ? '?::date[], ' : ''}?::bigint[], ?::float8[], ?::float8[],
                          ?::timestamptz[], ?::bigint[])
     on conflict (${keys}) do update set units = excluded.units, value = excluded.value,
       last_cost = excluded.last_cost, last_at = excluded.last_at, last_id = excluded.last_id`,
    [
      rows.map((r) => r.sku),
      rows.map((r) => r.location),
      ...(snapshot ? [rows.map((r) => r.period!)] : []),
      rows.map((r) => r.units),
      rows.map((r) => r.value),
      rows.map((r) => r.lastCost),
      rows.map((r) => r.lastAt),
      rows.map((r) => r.lastId),
    ] as Knex.RawBinding[],
  );
}
