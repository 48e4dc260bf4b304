import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import type { Knex } from 'knex';
import { expect, inject, it } from 'vitest';
import { createDb } from '../../src/db/knex.js';
import { migrateLatest, migrationSource } from '../../src/db/migrate.js';
import { dayOf } from '../../src/reports/ledger-replay.js';
import { compactAllPending } from '../../src/reports/rollups.js';
import { createTestContext } from '../helpers/context.js';
import { cloneTemplate, dropDatabase, testDatabaseUrl } from '../helpers/databases.js';
import { plantMovements, plantProducts } from '../helpers/ledger-plant.js';
import {
  dayMs,
  expectAbcWindowEqualsLedger,
  expectServedAbcEqualsLedger,
  expectServedValuationEqualsReplay,
  expectValuationEqualsReplay,
  keepLevelsNonNegative,
  locations,
  op,
  start,
  toMovements,
} from '../helpers/ledger-random.js';
import { getWithKey } from '../helpers/report-pages.js';

/**
 * The upgrade path of db/migrations/20261207020000_report_days_weeks.ts: a database whose ledger was
 * folded before the day snapshots and weekly sales existed. Compaction then wrote everything it writes
 * now but those two (the migration's commit only added them), so the database of the release before is
 * a migrated one, written and compacted, with this migration rolled back (its down() drops exactly
 * what its up() created); migrating up then fills them from the folded data as a deploy would.
 */
const migration = '20261207020000_report_days_weeks';
const itsTables = ['stock_value_days', 'stock_value_days_from', 'stock_sales_weekly'];

/** A case: the ledger before and after the upgrade, the `?at=` instants and the abc windows checked. */
const upgradeCase = fc.record({
  // Batches written before the upgrade, each compacted or left pending when the migration runs.
  batches: fc.array(fc.tuple(fc.array(op, { minLength: 5, maxLength: 60 }), fc.boolean()), {
    minLength: 1,
    maxLength: 3,
  }),
  // Written after it and compacted over the migrated snapshots (anywhere: before `from` too).
  later: fc.array(op, { maxLength: 40 }),
  instants: fc.array(fc.integer({ min: -dayMs, max: 152 * dayMs }), { minLength: 2, maxLength: 4 }),
  // Instants on the last day before `from` (its last folded day) and on the first day from it.
  offsets: fc.tuple(fc.integer({ min: 0, max: dayMs - 1 }), fc.integer({ min: 0, max: dayMs - 1 })),
  windows: fc.array(
    fc.record({
      from: fc.integer({ min: -3 * dayMs, max: 150 * dayMs }),
      length: fc.integer({ min: 1, max: 70 * dayMs }),
      location: fc.option(fc.constantFrom(...locations), { nil: undefined }),
    }),
    { minLength: 2, maxLength: 3 },
  ),
});
type UpgradeCase = typeof upgradeCase extends fc.Arbitrary<infer T> ? T : never;

let run = 0;
/** `?at=` instants checked on each side of `stock_value_days_from`, over every run. */
const checked = { beforeDays: 0, fromDays: 0 };

/**
 * Writes the case's batches under the prefix `R<run>-` on a migrated database, rolls this migration
 * back and applies it again, and checks `stock_value_days_from`; then checks the answers (`check`)
 * with the pending rows still pending, writes the later rows, compacts, and checks them again.
 */
async function upgradeAndCheck(
  db: Knex,
  c: UpgradeCase,
  check: (
    prefix: string,
    ats: (Date | undefined)[],
    windows: { from: Date; to: Date; location?: string }[],
  ) => Promise<void>,
): Promise<void> {
  run += 1;
  const prefix = `R${run}-`;
  await db.raw(`insert into locations (code, name) values ('north', 'North'), ('south', 'South')`);
  await plantProducts(
    db,
    [0, 1, 2, 3].map((i) => `${prefix}S${i}`),
  );
  const ledgerSums = new Map<string, number>();
  for (const [index, [ops, compact]] of c.batches.entries()) {
    await plantMovements(db, keepLevelsNonNegative(ledgerSums, toMovements(run, index, ops)));
    if (compact) await compactAllPending(db);
  }

  const [, rolledBack] = (await db.migrate.down({ migrationSource })) as [number, string[]];
  expect(rolledBack).toEqual([migration]);
  const { rows: left } = await db.raw<{ rows: unknown[] }>(
    'select 1 from pg_tables where tablename = any(?)',
    [itsTables],
  );
  expect(left).toEqual([]);
  expect(await migrateLatest(db)).toEqual([migration]);

  // Complete from the day after the last folded movement; from the start with nothing folded.
  const { rows: folded } = await db.raw<{ rows: { last: Date | null }[] }>(
    `select max(created_at) as last from stock_movements m
     where not exists (select 1 from stock_rollup_pending p where p.movement_id = m.id)`,
  );
  const last = folded[0]!.last;
  const fromMs = last ? Date.parse(`${dayOf(last)}T00:00:00Z`) + dayMs : null;
  const { rows: from } = await db.raw<{ rows: { day: string }[] }>(
    'select day::text as day from stock_value_days_from',
  );
  expect(from).toEqual([{ day: fromMs === null ? '-infinity' : dayOf(new Date(fromMs)) }]);

  const ats = c.instants.map((i) => new Date(start + i));
  if (fromMs !== null) ats.push(new Date(fromMs - dayMs + c.offsets[0]), new Date(fromMs + c.offsets[1]));
  for (const at of ats) if (fromMs !== null) checked[at.getTime() < fromMs ? 'beforeDays' : 'fromDays'] += 1;
  // The whole history at every location (its whole weeks from the weekly sales), then random windows.
  const windows = [{ from: -3 * dayMs, length: 156 * dayMs, location: undefined }, ...c.windows].map((w) => ({
    from: new Date(start + w.from),
    to: new Date(start + w.from + w.length),
    location: w.location,
  }));
  // The pending rows are still pending: the reports fold them in memory.
  await check(prefix, [undefined, ...ats], windows);
  // Compaction over the migrated snapshots: the pending rows and later ones (some backdated).
  await plantMovements(db, keepLevelsNonNegative(ledgerSums, toMovements(run, c.batches.length, c.later)));
  await compactAllPending(db);
  await check(prefix, [undefined, ...ats], windows);
}

it('after upgrading a database with folded data, ?at= (before and after stock_value_days_from) and abc over windows equal a naive replay of the ledger, also once compaction has run over the migrated snapshots', async () => {
  await fc.assert(
    fc.asyncProperty(upgradeCase, async (c) => {
      const database = `stockflow_test_days_${randomBytes(5).toString('hex')}`;
      await cloneTemplate(inject('templateDatabase'), database);
      const db = createDb({ DATABASE_URL: testDatabaseUrl(database), DATABASE_POOL_MAX: 2 });
      try {
        await upgradeAndCheck(db, c, async (prefix, ats, windows) => {
          for (const at of ats) await expectValuationEqualsReplay(db, prefix, at);
          for (const window of windows) await expectAbcWindowEqualsLedger(db, prefix, window);
        });
      } finally {
        await db.destroy();
        await dropDatabase(database);
      }
    }),
    // Each run has a database of its own, but shrinking would repeat dozens of them: report the first failure.
    { numRuns: 20, endOnFailure: true },
  );
  expect(checked.beforeDays).toBeGreaterThan(0);
  expect(checked.fromDays).toBeGreaterThan(0);
}, 240_000);

it('after the upgrade the API serves the same over HTTP: stock-valuation now and ?at= on each side of stock_value_days_from, and abc by units over windows, every cursor page, equal the naive replay', async () => {
  const served = { ...checked };
  await fc.assert(
    // Something folded before the upgrade, so every run has instants on both sides of `from`.
    fc.asyncProperty(
      upgradeCase.filter((c) => c.batches.some(([, compacted]) => compacted)),
      async (c) => {
        // A database and an app of its own, listening on a socket: the database is upgraded under it.
        const ctx = await createTestContext();
        try {
          const get = getWithKey(await ctx.app.listen({ host: '127.0.0.1', port: 0 }), ctx.pmsKey);
          await upgradeAndCheck(ctx.api.db, c, async (prefix, ats, windows) => {
            for (const at of ats) await expectServedValuationEqualsReplay(ctx.api.db, get, prefix, at);
            for (const window of windows) await expectServedAbcEqualsLedger(ctx.api.db, get, prefix, window);
          });
        } finally {
          await ctx.close();
        }
      },
    ),
    // A few runs: the property above covers the functions behind these routes.
    { numRuns: 4, endOnFailure: true },
  );
  expect(checked.beforeDays).toBeGreaterThan(served.beforeDays);
  expect(checked.fromDays).toBeGreaterThan(served.fromDays);
}, 120_000);
