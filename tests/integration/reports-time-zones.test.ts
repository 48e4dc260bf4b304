import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import type { Knex } from 'knex';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createDb } from '../../src/db/knex.js';
import { compactAllPending, compactRollups } from '../../src/reports/rollups.js';
import { disableEndpoint, enableEndpoint } from '../../src/webhooks/endpoints.js';
import { createTestContext, exitOf, type TestContext } from '../helpers/context.js';
import { cloneTemplate, dropDatabase, setDatabaseTimeZone, testDatabaseUrl } from '../helpers/databases.js';
import { plantMovements, plantProducts } from '../helpers/ledger-plant.js';
import {
  busyDay,
  keepLevelsNonNegative,
  type OpValue,
  op,
  start,
  toMovements,
} from '../helpers/ledger-random.js';
import { type Answer, everyPage, type Get, getWithKey } from '../helpers/report-pages.js';

/**
 * Reports count whole UTC days, weeks (from Monday) and hours (docs/reports.md), whatever the session
 * TimeZone of the connections that read and compact them and whatever the zone of the Node process.
 * The same ledger and activity go into databases whose connections default to UTC, to Pacific/Chatham
 * (+13:45, +12:45 from 5 April) and to America/St_Johns (−3:30, −2:30 from 8 March): zones whose
 * midnights are hours and a fraction away from UTC's, on other dates than UTC's; compaction runs under
 * each. Every report, asked the same over HTTP with windows and `?at=` instants on and around those
 * midnights, answers what the UTC one does, and so does a web process whose own zone (TZ) is
 * America/St_Johns on the Pacific/Chatham database.
 */

const zones = ['Pacific/Chatham', 'America/St_Johns'];
const hourMs = 3_600_000;
const dayMs = 24 * hourMs;

/** The days whose starts the windows below cut at: rows on either side of each differ by zone. */
const edges = ['2026-02-09', '2026-03-10', '2026-02-01', '2026-04-05'].map((d) =>
  Date.parse(`${d}T00:00:00Z`),
);
/** Around a UTC midnight: the day before at noon (Chatham's next day), just before, on it, St John's previous day. */
const aroundEdge = [-12 * hourMs, -1, 0, hourMs, 3 * hourMs];
const iso = (ms: number) => new Date(ms).toISOString();

/** Windows that cut at those days (from rounds down to 9 February, to up to 10 March), the whole ledger, and hours. */
const cut = `from=${iso(edges[0]! + 10.5 * hourMs)}&to=${iso(edges[1]! - 21 * hourMs)}`;
const whole = `from=${iso(start - 3 * dayMs)}&to=${iso(start + 160 * dayMs)}`;
const hours = `from=${iso(start + busyDay - 18 * hourMs)}&to=${iso(start + busyDay + 42 * hourMs)}`;
const activity = `from=${iso(edges[0]! - 5 * hourMs)}&to=${iso(edges[0]! + 2 * hourMs)}`;
const allActivity = `from=${iso(edges[0]! - 2 * dayMs)}&to=${iso(edges[0]! + 2 * dayMs)}`;

/** `?at=` instants: around the edges, and inside the day after the busy day (its rollups summed, not replayed). */
const ats = [
  ...edges.flatMap((e) => [e - 1, e + 2 * hourMs, e + 13 * hourMs]),
  start + busyDay + 36 * hourMs,
].map(iso);

/** What each side is asked: every report, JSON (all pages) and, for the first of each, CSV. */
const requests = [
  'stock-valuation',
  'stock-valuation?sku=R1-*',
  'stock-valuation?location=north',
  ...ats.map((at) => `stock-valuation?at=${at}`),
  `stock-valuation?at=${ats[1]}&location=south`,
  'low-stock',
  ...['day', 'week'].flatMap((bucket) => [
    `movements?bucket=${bucket}&${cut}`,
    `movements?bucket=${bucket}&groupBy=sku&${cut}`,
    `movements?bucket=${bucket}&location=north&${cut}`,
    `movements?bucket=${bucket}&${whole}`,
  ]),
  `movements?bucket=hour&${hours}`,
  `movements?bucket=hour&groupBy=sku&${hours}`,
  `sell-through?${cut}`,
  `sell-through?location=south&${cut}`,
  `sell-through?${whole}`,
  `abc?${cut}`,
  `abc?basis=units&${cut}`,
  `abc?basis=units&location=north&${cut}`,
  `abc?basis=units&${whole}`,
  'ageing',
  'ageing?location=default',
  ...['reservations', 'orders', 'jobs', 'webhooks'].flatMap((r) => [
    `${r}?${activity}`,
    `${r}?${allActivity}`,
  ]),
];

/** Movements on and around the edges (sales, receipts, returns, transfers), as the random ones are given. */
const edgeOps = (batch: number): OpValue[] =>
  edges.flatMap((edge, e) =>
    aroundEdge.map((offset, i) => ({
      sku: (e + i + batch) % 4,
      from: i % 3,
      to: (i + 1) % 3,
      kind: ['sale', 'receipt', 'return', 'sale', 'transfer'][(i + batch) % 5]!,
      quantity: 1 + i + batch,
      cost: 100 + 10 * i,
      at: edge + offset - start,
    })),
  );
/** A fixed ledger of random movements per batch (reproducible: a seed per batch). */
const randomOps = (seed: number, count: number) =>
  fc.sample(fc.array(op, { minLength: count, maxLength: count }), { seed, numRuns: 1 })[0]!;

interface Side {
  name: string;
  get: Get;
}
/** The apps of the three databases (UTC first), each listening on a socket. */
const contexts: { zone: string; ctx: TestContext }[] = [];
const sides: Side[] = [];
let web: ChildProcess | undefined;
const ledgerSums = new Map<string, number>();

/** Runs `write` on each database in turn: the same rows, in the same order, get the same ids. */
const onEach = async (write: (db: Knex) => Promise<unknown>) => {
  for (const { ctx } of contexts) await write(ctx.api.db);
};

beforeAll(async () => {
  for (const zone of ['UTC', ...zones]) {
    const ctx = await createTestContext({ timeZone: zone });
    contexts.push({ zone, ctx });
    const base = await ctx.app.listen({ host: '127.0.0.1', port: 0 });
    sides.push({ name: `${zone} sessions`, get: getWithKey(base, ctx.pmsKey) });
  }
  const chatham = contexts[1]!.ctx;
  const spawned = await chatham.spawnWeb({ TZ: 'America/St_Johns' });
  web = spawned.child;
  sides.push({
    name: 'Pacific/Chatham sessions, a web process in America/St_Johns',
    get: getWithKey(spawned.url, chatham.pmsKey),
  });

  await onEach((db) =>
    db.raw(`insert into locations (code, name) values ('north', 'North'), ('south', 'South')`),
  );
  await onEach((db) =>
    plantProducts(
      db,
      [0, 1, 2, 3].map((i) => `R1-S${i}`),
    ),
  );
  await onEach(writeActivity);
}, 120_000);

afterAll(async () => {
  if (web && web.exitCode === null) {
    web.kill('SIGTERM');
    await exitOf(web);
  }
  for (const { ctx } of contexts) await ctx.close();
});

it('the connections of each database have its zone', async () => {
  for (const { zone, ctx } of contexts) {
    const { rows } = await ctx.api.db.raw<{ rows: { zone: string }[] }>(
      `select current_setting('TimeZone') as zone`,
    );
    expect(rows[0]!.zone).toBe(zone);
  }
});

it('every report is asked', async () => {
  const { items }: Answer = await (await sides[0]!.get('/api/pms/reports')).json();
  const asked = new Set(requests.map((r) => r.split('?')[0]));
  expect(items.map((r: { name: string }) => r.name).filter((name: string) => !asked.has(name))).toEqual([]);
});

it('every report answers the same under each zone: rows folded, pending, compacted under the zone, backdated', async () => {
  const recent = Date.now() - 3 * dayMs - start;
  const batches = [
    [...randomOps(18, 60), ...edgeOps(0)],
    // And a sale three days ago: low-stock's daily sales count the last 28 days.
    [
      ...randomOps(19, 60),
      ...edgeOps(1),
      { sku: 0, from: 0, to: 0, kind: 'sale', quantity: 2, cost: null, at: recent },
    ],
    [...randomOps(20, 30), ...edgeOps(2)],
  ];
  const write = async (index: number) => {
    const movements = keepLevelsNonNegative(ledgerSums, toMovements(1, index, batches[index]!));
    await onEach((db) => plantMovements(db, movements));
  };
  const compact = () => onEach((db) => compactAllPending(db));

  await write(0);
  await compact();
  await write(1);
  await expectSameAnswers('batch 1 pending');
  await compact();
  await expectSameAnswers('compacted');
  // Mostly before what is folded: compaction replays those skus from their snapshots.
  await write(2);
  await expectSameAnswers('backdated, pending');
  await compact();
  await expectSameAnswers('backdated, compacted');
}, 240_000);

/** Each request answers on every side what it answers on the UTC side (JSON without asOf, every page; CSV). */
async function expectSameAnswers(phase: string): Promise<void> {
  const csvAsked = new Set<string>();
  for (const request of requests) {
    const path = `/api/pms/reports/${request}`;
    const [utc, ...others] = await Promise.all(sides.map((side) => answers(side, path)));
    for (const [i, other] of others.entries())
      expect(other, `${phase}: ${sides[i + 1]!.name}: ${path}`).toEqual(utc);
    // CSV: the first request of each report, and of the valuation as of an instant (an export path of its own).
    const report = request.includes('at=') ? 'stock-valuation?at' : request.split('?')[0]!;
    if (csvAsked.has(report)) continue;
    csvAsked.add(report);
    const [utcCsv, ...otherCsvs] = await Promise.all(sides.map((side) => csv(side, path)));
    for (const [i, other] of otherCsvs.entries())
      expect(other, `${phase}: ${sides[i + 1]!.name}: ${path} as CSV`).toBe(utcCsv);
  }
}

/** Every page of a JSON answer (pages of 50), without the instant it was taken at. */
async function answers(side: Side, path: string): Promise<Answer[]> {
  const pages = await everyPage(side.get, path, 50);
  return pages.map(({ asOf: _, ...page }) => page);
}

async function csv(side: Side, path: string): Promise<string> {
  const response = await side.get(path, { accept: 'text/csv' });
  expect(response.status, path).toBe(200);
  return response.text();
}

/**
 * Reservations, orders and their history, job runs, and a webhook endpoint's deliveries, attempts and
 * disabled spans, on instants around the first edge (9 February): the same rows on every database.
 */
async function writeActivity(db: Knex): Promise<void> {
  const edge = edges[0]!;
  const at = [...aroundEdge, 11 * hourMs].map((offset) => new Date(edge + offset));
  const uuid = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
  const statuses = ['committed', 'released', 'expired', 'active'];
  await db.transaction(async (trx) => {
    // The insert triggers stamp created_at with now(): off while these rows go in with theirs.
    await trx.raw('alter table reservations disable trigger reservations_version_on_insert');
    await trx.raw('alter table orders disable trigger orders_version_on_insert');
    for (const [i, created] of at.entries()) {
      const status = statuses[i % 4]!;
      await trx.raw(
        `insert into reservations (id, reference, status, expires_at, created_at, closed_at)
         values (?, ?, ?, ?, ?, ?)`,
        [
          uuid(i),
          `Z-${i}`,
          status,
          new Date(created.getTime() + dayMs),
          created,
          status === 'active' ? null : new Date(created.getTime() + (i + 1) * 7 * hourMs),
        ],
      );
    }
    // Orders: fulfilled, confirmed, cancelled; each with its history.
    const orders = [
      { lines: { open: 0, fulfilled: 2, cancelled: 0 }, confirmed: true, cancelled: false },
      { lines: { open: 3, fulfilled: 0, cancelled: 0 }, confirmed: true, cancelled: false },
      { lines: { open: 0, fulfilled: 0, cancelled: 4 }, confirmed: false, cancelled: true },
    ];
    for (const [i, o] of orders.entries()) {
      const created = at[i]!;
      const later = (hoursAfter: number) => new Date(created.getTime() + hoursAfter * hourMs);
      const { rows } = await trx.raw<{ rows: { id: number }[] }>(
        `insert into orders (order_number, currency, reservation_id, confirmed_at, cancelled_at, created_at)
         values (?, 'EUR', ?, ?, ?, ?) returning id`,
        [`Z-${i}`, uuid(i), o.confirmed ? later(1) : null, o.cancelled ? later(2) : null, created],
      );
      const id = rows[0]!.id;
      const ordered = o.lines.open + o.lines.fulfilled + o.lines.cancelled;
      await trx.raw(
        `insert into order_lines (order_id, line_no, sku, unit_price, ordered, open_reserved, fulfilled, cancelled)
         values (?, 0, ?, 1000, ?, ?, ?, ?)`,
        [id, `R1-S${i}`, ordered, o.lines.open, o.lines.fulfilled, o.lines.cancelled],
      );
      // Its status follows its lines (computed on every write of the order).
      await trx.raw('update orders set updated_at = created_at where id = ?', [id]);
      const history: [string, string | null, string, number][] = [['create', null, 'reserved', 0]];
      if (o.confirmed) history.push(['confirm', 'reserved', 'confirmed', 1]);
      if (o.lines.fulfilled > 0) history.push(['fulfill', 'confirmed', 'fulfilled', 3 + 5 * i]);
      if (o.cancelled) history.push(['cancel', 'reserved', 'cancelled', 2]);
      for (const [version, [action, from, to, hoursAfter]] of history.entries()) {
        await trx.raw(
          `insert into order_history (order_id, action, from_status, to_status, version, at) values (?, ?, ?, ?, ?, ?)`,
          [id, action, from, to, version + 1, later(hoursAfter)],
        );
      }
    }
    // The orders' deferred checks run now: a table with trigger events pending cannot be altered.
    await trx.raw('set constraints all immediate');
    await trx.raw('alter table reservations enable trigger reservations_version_on_insert');
    await trx.raw('alter table orders enable trigger orders_version_on_insert');
    const outcomes = ['completed', 'failed', 'retried'] as const;
    for (const [i, finished] of at.entries()) {
      const outcome = outcomes[i % 3]!;
      await trx.raw(
        `insert into job_runs (queue, name, attempt, outcome, error_code, wait_ms, run_ms, finished_at)
         values (?, ?, 1, ?, ?, ?, ?, ?)`,
        [
          i % 2 ? 'inventory' : 'products',
          i % 2 ? 'inventory.adjust' : 'product.create',
          outcome,
          outcome === 'failed' ? 'insufficient_stock' : null,
          10 * i,
          5 + 7 * i,
          finished,
        ],
      );
    }
  });
  // A webhook endpoint disabled, enabled and disabled again, its events written as the app writes them.
  const endpoint = uuid(100);
  await db.raw(
    `insert into webhook_endpoints (id, url, description, event_types, secret, created_at)
     values (?, ?, 'zones', '{stock.moved}', 'unused', ?)`,
    [endpoint, 'https://user:pw@example.com/hook?token=x#part', new Date(edge - dayMs)],
  );
  await disableEndpoint(db, endpoint, 'gone');
  await enableEndpoint(db, endpoint);
  await disableEndpoint(db, endpoint, 'gone');
  const { rows: events } = await db.raw<{ rows: { id: string; seq: number; type: string }[] }>(
    `select id, seq, type from events where aggregate_id = ? order by seq`,
    [endpoint],
  );
  for (const [i, e] of events.entries()) {
    const occurred = at[[1, 3, 4][i]!]!;
    await db.raw('update events set occurred_at = ? where seq = ?', [occurred, e.seq]);
    const { rows } = await db.raw<{ rows: { id: string }[] }>(
      `insert into webhook_deliveries (endpoint_id, event_id, event_seq, event_type, status, attempts, created_at)
       values (?, ?, ?, ?, ?, ?, ?) returning id`,
      [endpoint, e.id, e.seq, e.type, ['delivered', 'failed', 'pending'][i]!, i + 1, at[i * 2]!],
    );
    for (let attempt = 1; attempt <= i + 1; attempt++) {
      await db.raw(
        `insert into webhook_attempts (delivery_id, attempt, started_at, duration_ms, status_code, outcome)
         values (?, ?, ?, ?, ?, ?)`,
        [
          rows[0]!.id,
          attempt,
          at[(i * 2 + attempt) % at.length]!,
          40 * attempt + i,
          attempt === i + 1 && i === 0 ? 200 : 500,
          attempt === i + 1 && i === 0 ? 'delivered' : 'failed',
        ],
      );
    }
  }
}

it('compaction closes a month once no row of it (in UTC) is pending, whatever the session zone', async () => {
  for (const zone of ['UTC', ...zones]) {
    const database = `stockflow_test_zone_${randomBytes(5).toString('hex')}`;
    await cloneTemplate(inject('templateDatabase'), database);
    await setDatabaseTimeZone(testDatabaseUrl(database), zone);
    const db = createDb({ DATABASE_URL: testDatabaseUrl(database), DATABASE_POOL_MAX: 2 });
    try {
      await plantProducts(db, ['M-A', 'M-B']);
      // Noon on 31 January (UTC): 1 February already in Chatham. One run folds one sku; the other's stays pending.
      const noon = new Date('2026-01-31T12:00:00Z');
      await plantMovements(db, [
        { sku: 'M-A', location: 'default', kind: 'receipt', delta: 5, unitCost: 100, createdAt: noon },
        { sku: 'M-B', location: 'default', kind: 'receipt', delta: 7, unitCost: 100, createdAt: noon },
      ]);
      for (;;) {
        const run = await compactRollups(db, { maxSkus: 1 });
        const { rows } = await db.raw<{ rows: { january: boolean; waiting: boolean }[] }>(
          `select exists (select 1 from stock_value_periods where period = '2026-01-01') as january,
                  exists (select 1 from stock_rollup_pending where created_at < '2026-02-01T00:00:00Z') as waiting`,
        );
        expect(rows[0], `${zone}, after folding ${run.skus} sku(s)`).toEqual({
          january: !rows[0]!.waiting,
          waiting: rows[0]!.waiting,
        });
        if (run.skus === 0) break;
      }
    } finally {
      await db.destroy();
      await dropDatabase(database);
    }
  }
});
