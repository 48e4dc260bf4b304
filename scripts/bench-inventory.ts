import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream, readFileSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { Knex } from 'knex';
import pg from 'pg';
import { parseConfig } from '../src/config.js';
import { createApiKey } from '../src/db/api-keys.js';
import { createDb } from '../src/db/knex.js';
import { ensureDatabase, migrateLatest } from '../src/db/migrate.js';
import { createReservation } from '../src/domain/reservations.js';
import { adjustStock } from '../src/domain/stock.js';
import { runEntry } from '../src/entry.js';
import { applyOnce } from '../src/workers/apply-once.js';

/**
 * `npm run bench:inventory`: adjust and reserve jobs, hot (1 sku, 1 location) and spread (10,000
 * skus), driven through the real web and worker processes; the same transactions as raw SQL
 * through `pg` at the worker's concurrency in the same run; and where a job's time goes.
 * Settings: BENCH_JOBS (per case, default 3000), BENCH_SECONDS (latency run, default 5),
 * BENCH_HTTP_CONCURRENCY (64), WORKER_CONCURRENCY_INVENTORY (16), BENCH_LOG_LEVEL (warn),
 * BENCH_CASES (e.g. hot-adjust,spread-reserve; default all four), BENCH_WORKER_NODE_ARGS
 * (e.g. --cpu-prof), BENCH_DATABASE_URL (a scratch database: it is dropped and created again), BENCH_LOG_DIR (write
 * the web and worker logs there).
 */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const env = process.env;
const jobsPerCase = Number(env.BENCH_JOBS ?? 3000);
const latencySeconds = Number(env.BENCH_SECONDS ?? 5);
const httpConcurrency = Number(env.BENCH_HTTP_CONCURRENCY ?? 64);
const workerConcurrency = Number(env.WORKER_CONCURRENCY_INVENTORY ?? 16);
const databaseUrl = env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/stockflow_bench';
const spreadSkus = 10_000;
const cases = env.BENCH_CASES?.split(',');
const prefix = `bench-${process.pid}`;

type Op = 'adjust' | 'reserve';
type Case = 'hot' | 'spread';

const pick = (c: Case) => (c === 'hot' ? 'HOT' : `S${Math.floor(Math.random() * spreadSkus)}`);

function body(op: Op, c: Case, n: number) {
  const sku = pick(c);
  return op === 'adjust'
    ? {
        path: '/api/pms/inventory/adjust',
        payload: {
          movements: [{ sku, location: 'default', delta: 1, reason: 'found', reference: `b-${n}` }],
        },
      }
    : {
        path: '/api/pms/inventory/reservations',
        payload: { reference: `b-${n}`, lines: [{ sku, quantity: 1 }] },
      };
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
const ms = (v: number) => `${v.toFixed(1)} ms`;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

/** CPU seconds used so far by a process (user + system), from /proc. */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}
function pidsOf(name: string): number[] {
  try {
    return execFileSync('pgrep', ['-x', name]).toString().trim().split('\n').map(Number);
  } catch {
    return [];
  }
}

interface Processes {
  web: ChildProcess;
  worker: ChildProcess;
}
function cpuSnapshot(p: Processes) {
  return {
    web: cpuSeconds(p.web.pid!),
    worker: cpuSeconds(p.worker.pid!),
    postgres: pidsOf('postgres').reduce((n, pid) => n + cpuSeconds(pid), 0),
    redis: pidsOf('redis-server').reduce((n, pid) => n + cpuSeconds(pid), 0),
    bench: process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6,
  };
}
function cpuPerThousand(
  before: ReturnType<typeof cpuSnapshot>,
  after: ReturnType<typeof cpuSnapshot>,
  jobs: number,
) {
  return Object.fromEntries(
    Object.keys(before).map((k) => {
      const key = k as keyof typeof before;
      return [key, Number((((after[key] - before[key]) * 1000) / jobs).toFixed(2))];
    }),
  );
}

let stopping = false;

function start(name: string, args: string[], extra: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...env, ...extra },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = env.BENCH_LOG_DIR ? createWriteStream(path.join(env.BENCH_LOG_DIR, `${name}.log`)) : undefined;
  child.stdout!.on('data', (c: Buffer) => log?.write(c));
  child.stderr!.on('data', (c: Buffer) => process.stderr.write(c));
  child.once('exit', (code, signal) => {
    if (!stopping) {
      console.error(`the ${name} process exited (${code ?? signal}) during the benchmark`);
      process.exit(1);
    }
  });
  return child;
}

async function waitForHttp(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the web process did not come up');
}

function makeClient(port: number, key: string) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: httpConcurrency });
  return (requestPath: string, payload: unknown) =>
    new Promise<{ status: number; id: string; at: number; ms: number }>((resolve, reject) => {
      const data = JSON.stringify(payload);
      const t0 = performance.now();
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          path: requestPath,
          method: 'POST',
          agent,
          headers: {
            authorization: `Bearer ${key}`,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(data),
          },
        },
        (res) => {
          let text = '';
          res.on('data', (c) => (text += c));
          res.on('end', () => {
            if (res.statusCode !== 202) return reject(new Error(`HTTP ${res.statusCode}: ${text}`));
            resolve({
              status: res.statusCode,
              id: JSON.parse(text).id,
              at: Date.now(),
              ms: performance.now() - t0,
            });
          });
        },
      );
      req.on('error', reject);
      req.end(data);
    });
}

type Client = ReturnType<typeof makeClient>;

async function finishedTimes(queue: Queue, ids: string[]): Promise<Map<string, number>> {
  const done = new Map<string, number>();
  const deadline = Date.now() + 300_000;
  let pending = ids;
  while (pending.length > 0) {
    if (Date.now() > deadline) throw new Error(`${pending.length} job(s) did not finish`);
    const still: string[] = [];
    for (let i = 0; i < pending.length; i += 500) {
      const slice = pending.slice(i, i + 500);
      const jobs = await Promise.all(slice.map((id) => queue.getJob(id)));
      jobs.forEach((job, k) => {
        if (job?.finishedOn) {
          if (job.failedReason) throw new Error(`job ${job.id} failed: ${job.failedReason}`);
          done.set(slice[k]!, job.finishedOn);
        } else still.push(slice[k]!);
      });
    }
    pending = still;
    if (pending.length) await new Promise((r) => setTimeout(r, 200));
  }
  return done;
}

/** Closed loop: as fast as the platform takes them. Returns the sustainable rate. */
async function throughput(client: Client, queue: Queue, procs: Processes, op: Op, c: Case) {
  const cpu0 = cpuSnapshot(procs);
  const started = Date.now();
  const submitted: { id: string; at: number; ms: number }[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: httpConcurrency }, async () => {
      while (next < jobsPerCase) {
        const { path: p, payload } = body(op, c, next++);
        submitted.push(await client(p, payload));
      }
    }),
  );
  const finished = await finishedTimes(
    queue,
    submitted.map((s) => s.id),
  );
  const last = Math.max(...finished.values());
  const rate = (jobsPerCase * 1000) / (last - started);
  return {
    rate,
    intakeP50: percentile(
      submitted.map((s) => s.ms),
      50,
    ),
    cpu: cpuPerThousand(cpu0, cpuSnapshot(procs), jobsPerCase),
  };
}

/** Intake first (queue paused), then the worker drains the backlog alone: the worker's own rate. */
async function drain(client: Client, queue: Queue, op: Op, c: Case) {
  await queue.pause();
  const ids: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: httpConcurrency }, async () => {
      while (next < jobsPerCase) {
        const { path: p, payload } = body(op, c, next++);
        ids.push((await client(p, payload)).id);
      }
    }),
  );
  const started = Date.now();
  await queue.resume();
  const finished = await finishedTimes(queue, ids);
  return (jobsPerCase * 1000) / (Math.max(...finished.values()) - started);
}

/** Open loop at a fixed rate: intake and end-to-end (202 → completed) latency. */
async function latency(client: Client, queue: Queue, op: Op, c: Case, rate: number) {
  const total = Math.max(50, Math.round(rate * latencySeconds));
  const interval = 1000 / rate;
  const t0 = performance.now();
  const pending: Promise<{ id: string; at: number; ms: number }>[] = [];
  for (let n = 0; n < total; n++) {
    const due = t0 + n * interval;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const { path: p, payload } = body(op, c, n);
    pending.push(client(p, payload));
  }
  const submitted = await Promise.all(pending);
  const finished = await finishedTimes(
    queue,
    submitted.map((s) => s.id),
  );
  const e2e = submitted.map((s) => Math.max(0, finished.get(s.id)! - s.at));
  const intake = submitted.map((s) => s.ms);
  return {
    rate,
    intakeP50: percentile(intake, 50),
    intakeP99: percentile(intake, 99),
    e2eP50: percentile(e2e, 50),
    e2eP99: percentile(e2e, 99),
  };
}

/** The same transactions as the worker runs, as raw SQL through pg, at the worker's concurrency. */
type Bookkeeping = 'none' | 'separate' | 'merged';

/**
 * One job's transaction as raw SQL. Bookkeeping adds what applyOnce adds to every job (the claim
 * with its settings, and the stored result): `separate` as applyOnce sends it (two more round
 * trips), `merged` sent with BEGIN and with COMMIT (same statements, no extra round trip).
 */
async function rawTransaction(
  client: pg.ClientBase,
  op: Op,
  sku: string,
  n: number,
  jobId = '',
  mode: Bookkeeping = 'none',
) {
  const claim = `insert into applied_jobs (job_id, queue, name)
     select ${pg.escapeLiteral(jobId)}, 'inventory', ${pg.escapeLiteral(op)}
     from (select set_config('stockflow.actor', 'bench', true), set_config('stockflow.job_id', ${pg.escapeLiteral(jobId)}, true)) as settings
     on conflict (job_id) do nothing`;
  const record = `update applied_jobs set result = '{"movements":[]}' where job_id = ${pg.escapeLiteral(jobId)}`;
  if (mode === 'merged') await client.query(`begin; ${claim}`);
  else await client.query('begin');
  if (mode === 'separate') await client.query(claim);
  if (op === 'adjust') {
    await client.query('select * from inventory_levels where sku = $1 and location = $2 for update', [
      sku,
      'default',
    ]);
    await client.query(
      `insert into stock_movements (kind, sku, location, delta, reason, reference, on_hand_after, reserved_after)
       values ('adjustment', $1, 'default', 1, 'found', $2, 0, 0) returning *`,
      [sku, `raw-${n}`],
    );
  } else {
    await client.query(
      `select l.*, c.priority, c.active from inventory_levels l join locations c on c.code = l.location
       where l.sku = any($1::text[]) and (c.active and l.sku = any($1::text[])
             or (l.sku, l.location) in (select * from unnest($2::text[], $3::text[])))
       order by l.sku, l.location for update of l`,
      [[sku], [], []],
    );
    const id = randomUUID();
    await client.query(
      `with r as (insert into reservations (id, reference, expires_at) values ($1, $2, now() + make_interval(secs => 900)) returning *),
       l as (insert into reservation_lines (reservation_id, line_no, request_line, sku, location, quantity, rule)
             select r.id, 0, 0, $3, 'default', 1, 'single_location' from r returning *)
       select r.*, (select json_agg(l) from l) as lines from r`,
      [id, `raw-${n}`, sku],
    );
    await client.query(
      `insert into stock_movements (kind, sku, location, delta, reason, reference, reservation_id, on_hand_after, reserved_after)
       values ('reserve', $1, 'default', 1, 'reservation', $2, $3, 0, 0) returning *`,
      [sku, `raw-${n}`, id],
    );
    await client.query(
      `insert into events (type, aggregate_type, aggregate_id, data) values ('reservation.created', 'reservation', $1, $2)`,
      [id, JSON.stringify({ reservation: { id, reference: `raw-${n}` } })],
    );
  }
  if (mode === 'separate') await client.query(record);
  await client.query(mode === 'merged' ? `${record}; commit` : 'commit');
}

async function rawSql(op: Op, c: Case, procs: Processes, mode: Bookkeeping = 'none') {
  const cpu0 = cpuSnapshot(procs);
  const pool = new pg.Pool({ connectionString: databaseUrl, max: workerConcurrency });
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: workerConcurrency }, async () => {
      const client = await pool.connect();
      try {
        while (next < jobsPerCase) {
          const n = next++;
          await rawTransaction(client, op, pick(c), n, `raw-${process.pid}-${mode}-${op}-${c}-${n}`, mode);
        }
      } finally {
        client.release();
      }
    }),
  );
  const rate = (jobsPerCase * 1000) / (performance.now() - started);
  // Before the pool ends: its backends' CPU time leaves /proc with them.
  const cpu = cpuPerThousand(cpu0, cpuSnapshot(procs), jobsPerCase);
  await pool.end();
  return { rate, cpu };
}

/**
 * The reference: a bare BullMQ worker (this process, the worker's concurrency) running the
 * raw transaction per job, jobs added beforehand with addBulk: no HTTP, no knex, no applyOnce.
 */
async function bareBullmq(redis: Redis, op: Op, c: Case) {
  const name = `bare-${op}-${c}`;
  const queue = new Queue(name, { connection: redis, prefix });
  await queue.addBulk(
    Array.from({ length: jobsPerCase }, (_, n) => ({
      name,
      data: { sku: pick(c), n },
      opts: { removeOnComplete: true, attempts: 3 },
    })),
  );
  const pool = new pg.Pool({ connectionString: databaseUrl, max: workerConcurrency });
  let done = 0;
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((r) => (finish = r));
  const started = performance.now();
  const worker = new Worker(
    name,
    async (job) => {
      const client = await pool.connect();
      try {
        await rawTransaction(client, op, job.data.sku, job.data.n);
      } finally {
        client.release();
      }
    },
    { connection: redis.duplicate(), prefix, concurrency: workerConcurrency },
  );
  worker.on('completed', () => {
    if (++done === jobsPerCase) finish();
  });
  await finished;
  const rate = (jobsPerCase * 1000) / (performance.now() - started);
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  await pool.end();
  return rate;
}

/** Sequential (no contention) profile of one job's transaction: round trips, time per trip, lock hold. */
async function profile(db: Knex, op: Op) {
  const runs = 300;
  const trips: { sql: string; start: number; end: number }[][] = [];
  let current: { sql: string; start: number; end: number }[] = [];
  const open = new Map<string, { sql: string; start: number; end: number }>();
  const onQuery = (q: { __knexQueryUid: string; sql: string }) => {
    const trip = { sql: q.sql, start: performance.now(), end: 0 };
    open.set(q.__knexQueryUid, trip);
    current.push(trip);
  };
  const onResponse = (_r: unknown, q: { __knexQueryUid: string }) => {
    const trip = open.get(q.__knexQueryUid);
    if (trip) trip.end = performance.now();
  };
  db.on('query', onQuery).on('query-response', onResponse);
  const totals: number[] = [];
  for (let i = 0; i < runs; i++) {
    current = [];
    const sku = `S${i}`;
    const t0 = performance.now();
    await applyOnce(
      db,
      { id: `profile-${op}-${i}-${process.pid}`, queueName: 'inventory', name: op },
      { actor: 'bench' },
      (trx): Promise<unknown> =>
        op === 'adjust'
          ? adjustStock(trx, { movements: [{ sku, location: 'default', delta: 1, reason: 'found' }] })
          : createReservation(trx, { reference: `p-${i}`, lines: [{ sku, quantity: 1 }], ttlSeconds: 900 }),
    );
    const t1 = performance.now();
    totals.push(t1 - t0);
    current.push({ sql: 'COMMIT (acknowledged)', start: t1, end: t1 });
    trips.push(current);
  }
  db.removeListener('query', onQuery).removeListener('query-response', onResponse);
  const perJob = trips[0]!.length - 1;
  const lockHold = trips.map((t) => {
    const lock = t.find((q) => /for update/i.test(q.sql))!;
    return t[t.length - 1]!.end - lock.start;
  });
  return {
    roundTrips: perJob,
    statements: trips[0]!.slice(0, -1).map((q) => q.sql.replace(/\s+/g, ' ').slice(0, 60)),
    transactionMs: percentile(totals, 50),
    perTripMs: percentile(totals, 50) / perJob,
    lockHoldMs: percentile(lockHold, 50),
  };
}

/** Server-side cost of the ledger trigger, from EXPLAIN ANALYZE of one ledger insert. */
async function triggerCost() {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const exec: number[] = [];
  const trigger: number[] = [];
  for (let i = 0; i < 200; i++) {
    await client.query('begin');
    const { rows } = await client.query(
      `explain (analyze, format json) insert into stock_movements (kind, sku, location, delta, reason, on_hand_after, reserved_after)
       values ('adjustment', $1, 'default', 1, 'found', 0, 0)`,
      [`S${5000 + i}`],
    );
    await client.query('rollback');
    const plan = rows[0]['QUERY PLAN'][0];
    exec.push(plan['Execution Time']);
    trigger.push(
      plan.Triggers.find((t: { 'Trigger Name': string }) => t['Trigger Name'] === 'stock_movements_apply')
        .Time,
    );
  }
  await client.end();
  return { insertMs: percentile(exec, 50), triggerMs: percentile(trigger, 50) };
}

runEntry(async () => {
  const url = new URL(databaseUrl);
  const admin = new pg.Client({
    connectionString: Object.assign(new URL(databaseUrl), { pathname: '/postgres' }).toString(),
  });
  await admin.connect();
  await admin.query(`drop database if exists ${pg.escapeIdentifier(url.pathname.slice(1))} with (force)`);
  await admin.end();
  await ensureDatabase(databaseUrl);
  const db = createDb({ DATABASE_URL: databaseUrl, DATABASE_POOL_MAX: 4 });
  await migrateLatest(db);
  console.log(`seeding ${spreadSkus} skus + HOT in ${url.pathname.slice(1)}`);
  await db.raw(`insert into products (sku, name, price_amount, price_currency)
                select 'S' || n, 'Spread ' || n, 100, 'EUR' from generate_series(0, ${spreadSkus - 1}) n`);
  await db.raw(
    `insert into products (sku, name, price_amount, price_currency) values ('HOT', 'Hot', 100, 'EUR')`,
  );
  await db.raw(`insert into stock_movements (kind, sku, location, delta, reason, on_hand_after, reserved_after)
                select 'receipt', sku, 'default', 1000000, 'received', 0, 0 from products`);
  await db.raw('vacuum analyze');
  const { key } = await createApiKey(db, { name: 'bench', scopes: ['pms'] });

  const port = await freePort();
  const settings = {
    DATABASE_URL: databaseUrl,
    QUEUE_PREFIX: prefix,
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: env.BENCH_LOG_LEVEL ?? 'warn',
    WORKER_CONCURRENCY_INVENTORY: String(workerConcurrency),
  };
  const procs: Processes = {
    web: start('web', ['dist/src/api/server.js'], settings),
    worker: start(
      'worker',
      [
        ...(env.BENCH_WORKER_NODE_ARGS?.split(' ').filter(Boolean) ?? []),
        'dist/src/workers/main.js',
        '--queues',
        'inventory',
      ],
      {
        ...settings,
      },
    ),
  };
  const config = parseConfig({ ...env, ...settings });
  const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null });
  const queue = new Queue('inventory', { connection: redis, prefix });
  try {
    await waitForHttp(port);
    const client = makeClient(port, key);
    console.log(
      `worker concurrency ${workerConcurrency}, HTTP concurrency ${httpConcurrency}, ${jobsPerCase} jobs per case, ` +
        `${latencySeconds} s latency runs, log level ${settings.LOG_LEVEL}\n`,
    );
    // Warm up both processes (JIT, pools) before measuring.
    await throughput(client, queue, procs, 'adjust', 'spread');

    const rows: Record<string, unknown>[] = [];
    for (const c of ['hot', 'spread'] as const) {
      for (const op of ['adjust', 'reserve'] as const) {
        if (cases && !cases.includes(`${c}-${op}`)) continue;
        const t = await throughput(client, queue, procs, op, c);
        process.stdout.write(`${c} ${op}: ${Math.round(t.rate)}/s through the platform; `);
        const { rate: raw, cpu: rawCpu } = await rawSql(op, c, procs);
        process.stdout.write(`${Math.round(raw)}/s raw; `);
        const { rate: rawBooked } = await rawSql(op, c, procs, 'separate');
        const { rate: rawMerged } = await rawSql(op, c, procs, 'merged');
        const bare = await bareBullmq(redis, op, c);
        const drained = await drain(client, queue, op, c);
        process.stdout.write(`${Math.round(drained)}/s worker alone; `);
        const l = await latency(client, queue, op, c, t.rate / 2);
        process.stdout.write(`e2e p99 ${ms(l.e2eP99)} at ${Math.round(l.rate)}/s\n`);
        rows.push({
          case: `${c} ${op}`,
          'movements/s': Math.round(t.rate),
          'raw SQL/s': Math.round(raw),
          ratio: Number((t.rate / raw).toFixed(2)),
          'raw + applied_jobs/s': Math.round(rawBooked),
          'same, merged/s': Math.round(rawMerged),
          'bare BullMQ/s': Math.round(bare),
          'worker alone/s': Math.round(drained),
          'worker ratio': Number((drained / raw).toFixed(2)),
          'at rate/s': Math.round(l.rate),
          'intake p50': ms(l.intakeP50),
          'intake p99': ms(l.intakeP99),
          'e2e p50': ms(l.e2eP50),
          'e2e p99': ms(l.e2eP99),
        });
        console.log('  CPU seconds per 1000 jobs, platform:', t.cpu);
        console.log('  CPU seconds per 1000 jobs, raw SQL: ', rawCpu);
      }
    }
    console.log('\nthroughput (closed loop) vs raw SQL, and latency at half that rate:');
    console.table(rows);

    console.log(
      '\nwhere a job transaction goes (sequential, no contention, knex + applyOnce in this process):',
    );
    for (const op of ['adjust', 'reserve'] as const) {
      const p = await profile(db, op);
      console.log(
        `${op}: ${p.roundTrips} round trips, transaction ${ms(p.transactionMs)} (${ms(p.perTripMs)} per trip), ` +
          `row lock held ${ms(p.lockHoldMs)}`,
      );
      console.log(`  ${p.statements.join('\n  ')}`);
    }
    const trigger = await triggerCost();
    console.log(
      `ledger insert (EXPLAIN ANALYZE, server side): ${ms(trigger.insertMs)}, of which the apply trigger ` +
        `(level update + guard + event) ${ms(trigger.triggerMs)}`,
    );
  } finally {
    stopping = true;
    procs.web.kill('SIGTERM');
    procs.worker.kill('SIGTERM');
    await Promise.all(
      [procs.web, procs.worker].map((p) =>
        p.exitCode !== null ? null : new Promise((r) => p.once('exit', r)),
      ),
    );
    await queue.close();
    let cursor = '0';
    do {
      const [nextCursor, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = nextCursor;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== '0');
    await redis.quit();
    await db.destroy();
    if (!env.BENCH_KEEP_DATABASE) {
      const cleanup = new pg.Client({
        connectionString: Object.assign(new URL(databaseUrl), { pathname: '/postgres' }).toString(),
      });
      await cleanup.connect();
      await cleanup.query(
        `drop database if exists ${pg.escapeIdentifier(url.pathname.slice(1))} with (force)`,
      );
      await cleanup.end();
    }
  }
});
