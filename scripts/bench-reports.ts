import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Knex } from 'knex';
import { buildApp } from '../src/api/app.js';
import { openApiDeps, sharedWorkerDeps } from '../src/api/deps.js';
import { parseConfig } from '../src/config.js';
import { openPostgres } from '../src/connections.js';
import { createApiKey } from '../src/db/api-keys.js';
import { createDb } from '../src/db/knex.js';
import { ensureDatabase, migrateLatest } from '../src/db/migrate.js';
import { runEntry } from '../src/entry.js';
import { createLogger } from '../src/log.js';
import { readyJobs } from '../src/queues/queues.js';
import { compactAllPending, compactPaced } from '../src/reports/rollups.js';
import { byLedgerTime, createReplay, type ValuedMovement } from '../src/reports/valuation.js';
import { startWorkers, stopWorkers } from '../src/workers/queue-workers.js';
import { type BenchCase, writeBenchResult } from './bench/results.js';
import { benchLimits, deleteScratchKeys, dropScratchDatabase } from './bench/scratch.js';

/**
 * `npm run bench:reports`: seeds 10,000 skus × 5 locations and BENCH_ROWS ledger rows (1,000,000;
 * 10,000,000 for the large run) over a year, set-based, through the rollup trigger, then compacts;
 * times every report over a month and a year (p50/p99 over BENCH_ITERATIONS requests, through the
 * HTTP API) beside the same question as plain SQL over the raw ledger; `?at=` valuation; a CSV
 * export of about a million rows (first byte, rows, memory growth); and inventory.adjust
 * throughput through group commit with reports on (the rollup trigger, and compaction running as its
 * scheduler runs it: every REPORTS_COMPACT_INTERVAL_MS, giving way to the backlog) and off (neither),
 * in the same run, also with the compaction's catch-up after each round counted.
 * Settings: BENCH_ROWS, BENCH_ITERATIONS (20), BENCH_GC_JOBS (3000), BENCH_GC_ROUNDS (4: on and off
 * each, alternating which goes first), BENCH_DATABASE_URL (a scratch
 * database: dropped and created again). Last line: report_p99_ms=… valuation_at_p99_ms=… gc_ratio=…
 * gc_ratio_with_catch_up=…
 */

const env = process.env;
const rows = Number(env.BENCH_ROWS ?? 1_000_000);
const iterations = Number(env.BENCH_ITERATIONS ?? 20);
const gcJobs = Number(env.BENCH_GC_JOBS ?? 3000);
const gcRounds = Number(env.BENCH_GC_ROUNDS ?? 4);
const databaseUrl = env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/stockflow_bench_reports';
const skus = 10_000;
const locations = ['default', 'loc-2', 'loc-3', 'loc-4', 'loc-5'];
const dayMs = 86_400_000;

const ms = (n: number) => Math.round(n * 10) / 10;
const pct = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] ?? Number.NaN;
};
const log = (text: string) => console.log(text);

async function seed(db: Knex): Promise<void> {
  await db.raw(
    `insert into locations (code, name) select c, c from unnest(?::text[]) c on conflict do nothing`,
    [locations.slice(1)],
  );
  await db.raw(
    `insert into products (sku, name, price_amount, price_currency)
     select 'SKU-' || lpad(g::text, 5, '0'), 'Product ' || g, 500 + g % 5000, 'EUR' from generate_series(1, ?) g`,
    [skus],
  );
  // History: the apply trigger would stamp now(); the rollup trigger stays on and queues every row.
  await db.raw('alter table stock_movements disable trigger stock_movements_apply');
  const chunk = 100_000;
  const started = Date.now();
  for (let done = 0; done < rows; done += chunk) {
    const n = Math.min(chunk, rows - done);
    await db.raw(
      `insert into stock_movements (kind, sku, location, delta, reason, unit_cost, created_at, on_hand_after, reserved_after)
       select kind, sku, location,
              case kind when 'receipt' then 5 + r % 20 when 'return' then 1 + r % 2 when 'sale' then -(1 + r % 4)
                        else case when r % 2 = 0 then 1 + r % 3 else -(1 + r % 3) end end,
              case kind when 'receipt' then 'received' when 'return' then 'returned' when 'sale' then 'sale' else 'correction' end,
              case when kind = 'receipt' then 100 + r % 900 end,
              now() - interval '365 days' + (g::float8 / ?) * interval '365 days', 0, 0
       from (select g, r, 'SKU-' || lpad((1 + r % ?)::text, 5, '0') as sku, (?::text[])[1 + (r / 7) % 5] as location,
                    case when r % 20 < 9 then 'receipt' when r % 20 < 17 then 'sale' when r % 20 < 18 then 'return'
                         else 'adjustment' end as kind
             from (select g, (g * 2654435761::bigint) % 1000003 as r from generate_series(?::bigint, ?::bigint) g) x) y
       order by g`,
      [rows, skus, locations, done + 1, done + n],
    );
    log(`seeded ${done + n} / ${rows} ledger rows (${Math.round((Date.now() - started) / 1000)} s)`);
  }
  // Levels below zero get a receipt today (the ledger's levels are never negative).
  await db.raw(
    `insert into stock_movements (kind, sku, location, delta, reason, unit_cost, on_hand_after, reserved_after)
     select 'receipt', sku, location, -sum(delta), 'received', 300, 0, 0 from stock_movements
     group by sku, location having sum(delta) < 0`,
  );
  await db.raw('alter table stock_movements enable trigger stock_movements_apply');
  await db.transaction(async (trx) => {
    await trx.raw(`select set_config('stockflow.rebuild_levels', 'on', true)`);
    await trx.raw(
      `update inventory_levels l set on_hand = s.on_hand, safety_stock = 5
       from (select sku, location, sum(delta)::bigint as on_hand from stock_movements group by sku, location) s
       where l.sku = s.sku and l.location = s.location`,
    );
  });
  const compactStarted = Date.now();
  const compacted = await compactAllPending(db, 1000);
  log(
    `compacted ${compacted} movements into the rollups in ${Math.round((Date.now() - compactStarted) / 1000)} s`,
  );
  await db.raw('vacuum analyze');
}

/** Plain SQL over the raw ledger: the same question each report answers, without rollups. */
function baselines(from: Date, to: Date): Record<string, (db: Knex) => Promise<unknown>> {
  return {
    movements: (db) =>
      db.raw(
        `select (created_at at time zone 'UTC')::date, location, kind, sum(greatest(delta, 0)), sum(greatest(-delta, 0)), count(*)
         from stock_movements where created_at >= ? and created_at < ? group by 1, 2, 3`,
        [from, to],
      ),
    'sell-through': (db) =>
      db.raw(
        `select sku, sum(-delta) filter (where kind in ('sale', 'commit')), sum(delta) filter (where kind = 'return')
         from stock_movements where created_at >= ? and created_at < ? and kind in ('sale', 'commit', 'return') group by sku`,
        [from, to],
      ),
    abc: (db) =>
      db.raw(
        `select m.sku, sum(-m.delta) * p.price_amount from stock_movements m join products p using (sku)
         where m.created_at >= ? and m.created_at < ? and m.kind in ('sale', 'commit') group by m.sku, p.price_amount`,
        [from, to],
      ),
    ageing: (db) =>
      db.raw(
        `select sku, location, (created_at at time zone 'UTC')::date, sum(delta) from stock_movements
         where created_at >= now() - interval '91 days' and delta > 0 group by 1, 2, 3`,
      ),
    'stock-valuation': async (db) => {
      // Without rollups the moving average is a replay of the whole ledger.
      const { rows: all } = await db.raw<{ rows: ValuedMovement[] }>(
        `select id, sku, location, kind, delta, unit_cost as "unitCost", job_id as "jobId", created_at as "createdAt"
         from stock_movements`,
      );
      const replay = createReplay();
      for (const m of all.sort(byLedgerTime)) replay.apply(m);
    },
  };
}

async function timeIt(
  run: () => Promise<unknown>,
  count = iterations,
): Promise<{ p50: number; p99: number }> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    await run();
    times.push(performance.now() - t);
  }
  return { p50: ms(pct(times, 0.5)), p99: ms(pct(times, 0.99)) };
}

/** The scheduler's defaults (the bench's own config holds compaction off while it times the reports). */
const compaction = parseConfig({ ...env, DATABASE_URL: databaseUrl });

/**
 * Runs compaction while `work` runs, as the maintenance scheduler does: a paced run (it gives way to
 * a backlog of inventory jobs, `compactPaced`) every REPORTS_COMPACT_INTERVAL_MS, or at once after
 * one that took longer; then on until nothing is pending, which is the cost a deferred run only
 * moved. Answers the result of `work`, the runs (how many folded how many movements, how many gave
 * way) and the catch-up: how long the runs after `work` took (their own time, not the scheduler's
 * waits between them).
 */
async function whileCompacting<T>(db: Knex, inventory: import('bullmq').Queue, work: Promise<T>) {
  let done = false;
  let wake: () => void = () => undefined;
  const runs = { count: 0, movements: 0, deferred: 0 };
  let catchUpMs = 0;
  const loop = (async () => {
    for (;;) {
      const started = performance.now();
      const after = done;
      const run = await compactPaced(db, {
        maxSkus: compaction.REPORTS_COMPACT_MAX_SKUS,
        yieldAtReady: compaction.REPORTS_COMPACT_YIELD_READY,
        maxLagMs: compaction.REPORTS_COMPACT_MAX_LAG_MS,
        inventoryReady: () => readyJobs(inventory),
      });
      runs.count++;
      runs.movements += run.movements;
      if (run.deferred) runs.deferred++;
      if (after) catchUpMs += performance.now() - started;
      if (after && run.skus === 0 && !run.skipped && !run.deferred) return;
      const wait = compaction.REPORTS_COMPACT_INTERVAL_MS - (performance.now() - started);
      // The end of `work` cuts a wait short: the catch-up starts at once.
      if (wait > 0)
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, wait);
        });
    }
  })();
  const result = await work;
  done = true;
  wake();
  await loop;
  return { result, runs, catchUpMs };
}

/** inventory.adjust jobs through the worker's group commit; jobs per second. */
async function groupCommitThroughput(queue: import('bullmq').Queue, tag: string): Promise<number> {
  const jobs = Array.from({ length: gcJobs }, (_, i) => ({
    name: 'inventory.adjust',
    data: {
      payload: {
        movements: [
          {
            sku: `SKU-${String(1 + ((i * 7919) % skus)).padStart(5, '0')}`,
            location: locations[i % 5]!,
            delta: 1,
            reason: 'found',
            reference: `${tag}-${i}`,
          },
        ],
      },
      meta: { actor: 'bench' },
    },
  }));
  const before = (await queue.getJobCounts('completed')).completed ?? 0;
  const started = performance.now();
  for (let i = 0; i < jobs.length; i += 500) await queue.addBulk(jobs.slice(i, i + 500));
  while (((await queue.getJobCounts('completed')).completed ?? 0) - before < gcJobs) {
    await new Promise((r) => setTimeout(r, 20));
  }
  return gcJobs / ((performance.now() - started) / 1000);
}

runEntry(async () => {
  const prefix = `bench-reports-${randomBytes(3).toString('hex')}`;
  const config = parseConfig({
    ...env,
    ...benchLimits(),
    DATABASE_URL: databaseUrl,
    QUEUE_PREFIX: prefix,
    LOG_LEVEL: env.BENCH_LOG_LEVEL ?? 'warn',
    // The bench drives compaction itself.
    REPORTS_COMPACT_INTERVAL_MS: '600000',
  });
  const [load1] = (await import('node:os')).loadavg();
  log(
    `bench:reports: ${rows} ledger rows, ${skus} skus × ${locations.length} locations; load ${load1?.toFixed(2)} on ${(await import('node:os')).cpus().length} cores`,
  );
  await dropScratchDatabase(databaseUrl);
  await ensureDatabase(databaseUrl);
  const scripts = createDb(config);
  await migrateLatest(scripts);
  const seedStarted = Date.now();
  await seed(scripts);
  log(`seed and compaction: ${Math.round((Date.now() - seedStarted) / 1000)} s`);

  const logger = createLogger(config, 'bench-reports');
  const api = await openApiDeps(config, logger);
  const app = await buildApp(api);
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  const { key } = await createApiKey(scripts, { name: 'bench', scopes: ['pms'] });
  const get = async (path: string, accept = 'application/json') => {
    const response = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${key}`, accept } });
    if (response.status !== 200) throw new Error(`${path}: ${response.status} ${await response.text()}`);
    return response.text();
  };

  const now = Date.now();
  const ranges = {
    month: { from: new Date(now - 30 * dayMs), to: new Date(now) },
    year: { from: new Date(now - 365 * dayMs), to: new Date(now) },
  };
  const names = [
    'stock-valuation',
    'low-stock',
    'movements',
    'sell-through',
    'abc',
    'ageing',
    'reservations',
    'orders',
    'jobs',
    'webhooks',
  ];
  let worstMonth = 0;
  const timings: BenchCase[] = [];
  log('\nreport            range   p50 ms   p99 ms   plain SQL over the ledger p50 / p99 ms');
  for (const name of names) {
    for (const [range, window] of Object.entries(ranges)) {
      const params = new URLSearchParams({ from: window.from.toISOString(), to: window.to.toISOString() });
      const windowed = !['stock-valuation', 'low-stock', 'ageing'].includes(name);
      const path = `/api/pms/reports/${name}${windowed ? `?${params}` : ''}`;
      const timed = await timeIt(() => get(path));
      if (range === 'month') worstMonth = Math.max(worstMonth, timed.p99);
      const baseline = baselines(window.from, window.to)[name];
      // The full replay takes seconds (a minute and gigabytes at 10M rows): a few runs tell enough.
      const runs = name === 'stock-valuation' ? (rows > 2_000_000 ? 1 : 3) : iterations;
      const plain =
        baseline && (name !== 'stock-valuation' || range === 'month')
          ? await timeIt(() => baseline(scripts), runs)
          : undefined;
      timings.push({
        name: `${name}${windowed ? ` (${range})` : ''}`,
        p50Ms: timed.p50,
        p99Ms: timed.p99,
        ...(plain
          ? { baseline: { name: 'plain SQL over the ledger', p50Ms: plain.p50, p99Ms: plain.p99 } }
          : {}),
      });
      log(
        `${name.padEnd(17)} ${range.padEnd(6)} ${String(timed.p50).padStart(7)}  ${String(timed.p99).padStart(7)}   ${plain ? `${plain.p50} / ${plain.p99}` : '—'}`,
      );
      if (!windowed) break;
    }
  }
  const at = new Date(now - 200 * dayMs + 12 * 3_600_000).toISOString();
  const valuationAt = await timeIt(() => get(`/api/pms/reports/stock-valuation?at=${at}`));
  log(`stock-valuation ?at=${at}: p50 ${valuationAt.p50} ms, p99 ${valuationAt.p99} ms`);

  // CSV: every sku × location × day × kind of the year, streamed.
  const rssBefore = process.memoryUsage().rss;
  let rssPeak = rssBefore;
  const sampler = setInterval(() => {
    rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
  }, 50);
  const csvStarted = performance.now();
  const response = await fetch(
    `${base}/api/pms/reports/movements?groupBy=sku&from=${ranges.year.from.toISOString()}&to=${ranges.year.to.toISOString()}`,
    { headers: { authorization: `Bearer ${key}`, accept: 'text/csv' } },
  );
  let firstByte = 0;
  let lines = 0;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    if (!firstByte) firstByte = performance.now() - csvStarted;
    for (const byte of chunk) if (byte === 10) lines++;
  }
  clearInterval(sampler);
  log(
    `CSV export: ${lines - 1} rows in ${ms((performance.now() - csvStarted) / 1000)} s, first byte ${ms(firstByte)} ms, process grew ${Math.round((rssPeak - rssBefore) / 1024 / 1024)} MB`,
  );

  // Group commit with reports on (trigger and compaction) and off, alternating (the machine is shared).
  const workerDb = await openPostgres(config, 'worker');
  const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null });
  const workers = await startWorkers(sharedWorkerDeps(api, { redis, db: workerDb }), ['inventory']);
  const on: number[] = [];
  const onWithCatchUp: number[] = [];
  const off: number[] = [];
  const compactions: string[] = [];
  await groupCommitThroughput(api.queues.inventory, 'warm');
  // Rounds alternate which goes first, so a load that rises or falls during the run favours neither.
  const rollups = (on: boolean) =>
    scripts.raw(`alter table stock_movements ${on ? 'enable' : 'disable'} trigger stock_movements_rollup`);
  for (let round = 0; round < gcRounds; round++) {
    for (const withRollups of round % 2 === 0 ? [true, false] : [false, true]) {
      await rollups(withRollups);
      const run = groupCommitThroughput(api.queues.inventory, `${withRollups ? 'on' : 'off'}-${round}`);
      if (withRollups) {
        const { result, runs, catchUpMs } = await whileCompacting(scripts, api.queues.inventory, run);
        on.push(result);
        // The same jobs with the catch-up's time added: the cost deferring moved, not removed.
        onWithCatchUp.push(gcJobs / (gcJobs / result + catchUpMs / 1000));
        compactions.push(
          `${runs.count} runs (${runs.deferred} gave way), ${runs.movements} movements, catch-up runs ${Math.round(catchUpMs)} ms`,
        );
      } else off.push(await run);
    }
  }
  await rollups(true);
  const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
  const ratio = mean(on) / mean(off);
  const ratioWithCatchUp = mean(onWithCatchUp) / mean(off);
  log(
    `group commit, ${gcJobs} inventory.adjust jobs: reports on ${on.map(Math.round).join(', ')} jobs/s (${onWithCatchUp.map(Math.round).join(', ')} with the catch-up) (compaction every ${compaction.REPORTS_COMPACT_INTERVAL_MS} ms: ${compactions.join('; ')}), off ${off.map(Math.round).join(', ')} jobs/s`,
  );
  await stopWorkers(workers, 10_000);
  await redis.quit();
  await workerDb.destroy();
  await app.close();
  await api.close();
  await scripts.destroy();
  await deleteScratchKeys(config.REDIS_URL, prefix);
  const line = `report_p99_ms=${worstMonth} valuation_at_p99_ms=${valuationAt.p99} gc_ratio=${ratio.toFixed(3)} gc_ratio_with_catch_up=${ratioWithCatchUp.toFixed(3)}`;
  writeBenchResult({
    bench: 'reports',
    title: `Reports at ${rows.toLocaleString('en')} ledger rows`,
    cases: [
      ...timings,
      { name: 'stock-valuation ?at=', p50Ms: valuationAt.p50, p99Ms: valuationAt.p99 },
      {
        name: `group commit, ${gcJobs} inventory.adjust jobs, rollups on`,
        rate: mean(on),
        unit: 'jobs/s',
        baseline: { name: 'rollup trigger off', rate: mean(off) },
      },
      {
        name: `group commit, ${gcJobs} inventory.adjust jobs, rollups on, compaction's catch-up counted`,
        rate: mean(onWithCatchUp),
        unit: 'jobs/s',
        baseline: { name: 'rollup trigger off', rate: mean(off) },
      },
    ],
    line,
  });
  log(line);
});
