import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { parseConfig } from '../src/config.js';
import { createApiKey } from '../src/db/api-keys.js';
import { createDb } from '../src/db/knex.js';
import { ensureDatabase, migrateLatest } from '../src/db/migrate.js';
import { runEntry } from '../src/entry.js';
import { bareBullmq, profile, rawSql, triggerCost } from './bench/inventory-baselines.js';
import {
  type Case,
  cases,
  cpuPerThousand,
  cpuSnapshot,
  databaseUrl,
  env,
  httpConcurrency,
  jobsPerCase,
  latencySeconds,
  ms,
  type Op,
  type Processes,
  percentile,
  pick,
  prefix,
  root,
  spreadSkus,
  workerConcurrency,
} from './bench/inventory-settings.js';
import { writeBenchResult } from './bench/results.js';
import { benchLimits, deleteScratchKeys, dropScratchDatabase, freePort } from './bench/scratch.js';

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

let stopping = false;
/** Processes stopped on purpose between configurations. */
const retired = new WeakSet<ChildProcess>();

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
    if (!stopping && !retired.has(child)) {
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

interface Finished {
  /** When the worker took the job (BullMQ's processedOn) and when it finished (finishedOn). */
  processedOn: number;
  finishedOn: number;
}

async function finishedTimes(queue: Queue, ids: string[]): Promise<Map<string, Finished>> {
  const done = new Map<string, Finished>();
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
          done.set(slice[k]!, { processedOn: job.processedOn ?? job.finishedOn, finishedOn: job.finishedOn });
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
  const last = Math.max(...[...finished.values()].map((f) => f.finishedOn));
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
  const e2e = submitted.map((s) => Math.max(0, finished.get(s.id)!.finishedOn - s.at));
  // Where the end-to-end time goes: waiting in Redis for a worker, then in the worker.
  const pickup = submitted.map((s) => Math.max(0, finished.get(s.id)!.processedOn - s.at));
  const inWorker = submitted.map((s) => finished.get(s.id)!.finishedOn - finished.get(s.id)!.processedOn);
  const intake = submitted.map((s) => s.ms);
  return {
    rate,
    intakeP50: percentile(intake, 50),
    intakeP99: percentile(intake, 99),
    e2eP50: percentile(e2e, 50),
    e2eP99: percentile(e2e, 99),
    pickupP50: percentile(pickup, 50),
    pickupP99: percentile(pickup, 99),
    workerP50: percentile(inWorker, 50),
    workerP99: percentile(inWorker, 99),
  };
}

/** One job at a time: submit, wait for it to finish, submit the next. A lone job's end-to-end latency. */
async function lone(client: Client, queue: Queue, op: Op, c: Case, n = 30) {
  const e2e: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = Date.now();
    const { path: p, payload } = body(op, c, i);
    const { id } = await client(p, payload);
    for (;;) {
      const job = await queue.getJob(id);
      if (job?.finishedOn) {
        e2e.push(job.finishedOn - t0);
        break;
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  }
  return percentile(e2e, 50);
}

type Histogram = Map<string, number>;

/** The worker's group-commit batch sizes so far: `outcome|le` → count, and `outcome|sum`, `outcome|count`. */
async function batchMetrics(url: string): Promise<Histogram> {
  const text = await (await fetch(url)).text();
  const out: Histogram = new Map();
  for (const line of text.split('\n')) {
    const m = /^stockflow_group_commit_batch_jobs_(bucket|sum|count)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    const key = m[1] === 'bucket' ? `${labels.outcome}|${labels.le}` : `${labels.outcome}|${m[1]}`;
    out.set(key, Number(m[3]));
  }
  return out;
}

/** Batch sizes between two readings: mean jobs per transaction and the share of jobs per size bucket. */
function batchSizes(before: Histogram, after: Histogram) {
  const delta = (k: string) => (after.get(k) ?? 0) - (before.get(k) ?? 0);
  const outcomes = ['alone', 'committed', 'retried'];
  const jobs = outcomes.reduce((n, o) => n + delta(`${o}|sum`), 0);
  const transactions = outcomes.reduce((n, o) => n + delta(`${o}|count`), 0);
  if (transactions === 0)
    return { mean: 1, distribution: 'no batches (one transaction per job)', retried: 0 };
  const bounds = [
    ...new Set([...after.keys()].filter((k) => k.startsWith('committed|') && !/sum|count/.test(k))),
  ]
    .map((k) => k.split('|')[1]!)
    .filter((le) => le !== '+Inf')
    .map(Number)
    .sort((a, b) => a - b);
  const parts: string[] = [`1:${delta('alone|count')}`];
  let below = 0;
  for (const le of bounds) {
    const upTo = delta(`committed|${le}`);
    if (le > 1 && upTo - below > 0) parts.push(`≤${le}:${upTo - below}`);
    below = upTo;
  }
  const over = delta('committed|+Inf') - below;
  if (over > 0) parts.push(`>${bounds[bounds.length - 1]}:${over}`);
  return {
    mean: Number((jobs / transactions).toFixed(1)),
    distribution: `transactions by jobs ${parts.join(' ')}`,
    retried: delta('retried|count'),
  };
}

const concurrencies = (env.BENCH_CONCURRENCIES ?? '16,64').split(',').map(Number);
const groupModes = (env.BENCH_GROUP_COMMIT ?? 'on,off').split(',') as ('on' | 'off')[];
const detail = env.BENCH_DETAIL !== '0';
const caseList = (['hot', 'spread'] as const)
  .flatMap((c) => (['adjust', 'reserve'] as const).map((op) => ({ c, op })))
  .filter(({ c, op }) => !cases || cases.includes(`${c}-${op}`));

runEntry(async () => {
  const url = new URL(databaseUrl);
  await dropScratchDatabase(databaseUrl);
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

  const redisUrl = parseConfig({ ...env }).REDIS_URL;
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('inventory', { connection: redis, prefix });
  let procs: Processes | undefined;
  const stopPlatform = async () => {
    if (!procs) return;
    const { web, worker } = procs;
    procs = undefined;
    for (const p of [web, worker]) retired.add(p);
    web.kill('SIGTERM');
    worker.kill('SIGTERM');
    await Promise.all(
      [web, worker].map((p) => (p.exitCode !== null ? null : new Promise((r) => p.once('exit', r)))),
    );
  };
  const startPlatform = async (concurrency: number, group: 'on' | 'off') => {
    const port = await freePort();
    const metricsPort = await freePort();
    const settings = {
      DATABASE_URL: databaseUrl,
      QUEUE_PREFIX: prefix,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: env.BENCH_LOG_LEVEL ?? 'warn',
      WORKER_CONCURRENCY_INVENTORY: String(concurrency),
      INVENTORY_GROUP_COMMIT: group === 'on' ? 'true' : 'false',
      // One connection per active job when group commit is off.
      DATABASE_POOL_MAX: String(Math.max(20, concurrency + 4)),
      METRICS_PORT: String(metricsPort),
      ...benchLimits(),
    };
    const tag = `c${concurrency}-${group}`;
    procs = {
      // The web process needs few connections: the server's connection limit is for the worker.
      web: start(`web-${tag}`, ['dist/src/api/server.js'], { ...settings, DATABASE_POOL_MAX: '20' }),
      worker: start(
        `worker-${tag}`,
        [
          ...(env.BENCH_WORKER_NODE_ARGS?.split(' ').filter(Boolean) ?? []),
          'dist/src/workers/main.js',
          '--queues',
          'inventory',
        ],
        settings,
      ),
    };
    await waitForHttp(port);
    return { client: makeClient(port, key), metricsUrl: `http://127.0.0.1:${metricsPort}/metrics` };
  };

  try {
    console.log(
      `worker concurrency ${concurrencies.join(' and ')}, group commit ${groupModes.join(' and ')}, ` +
        `HTTP concurrency ${httpConcurrency}, ${jobsPerCase} jobs per case, ${latencySeconds} s latency runs\n`,
    );
    const raw = new Map<string, number>();
    const rows: Record<string, unknown>[] = [];
    const results: {
      concurrency: number;
      group: string;
      case: string;
      rate: number;
      e2eP50: number;
      e2eP99: number;
      raw: number;
    }[] = [];
    for (const concurrency of concurrencies) {
      for (const group of groupModes) {
        const { client, metricsUrl } = await startPlatform(concurrency, group);
        // Warm up both processes (JIT, pools) before measuring.
        await throughput(client, queue, procs!, 'adjust', 'spread');
        for (const { c, op } of caseList) {
          const name = `${c} ${op}`;
          if (!raw.has(`${concurrency}|${name}`)) {
            const r = await rawSql(op, c, procs!, 'none', concurrency);
            raw.set(`${concurrency}|${name}`, r.rate);
            console.log(
              `${name}: raw SQL, one transaction per movement, ${concurrency} connections: ${Math.round(r.rate)}/s`,
            );
            if (detail && concurrency === concurrencies[0]) {
              const { rate: booked } = await rawSql(op, c, procs!, 'separate', concurrency);
              const { rate: merged } = await rawSql(op, c, procs!, 'merged', concurrency);
              const bare = await bareBullmq(redis, op, c);
              console.log(
                `  + applied_jobs ${Math.round(booked)}/s, merged ${Math.round(merged)}/s; bare BullMQ worker (concurrency ${workerConcurrency}) ${Math.round(bare)}/s`,
              );
            }
          }
          const before = await batchMetrics(metricsUrl);
          const t = await throughput(client, queue, procs!, op, c);
          const sizes = batchSizes(before, await batchMetrics(metricsUrl));
          const l = await latency(client, queue, op, c, t.rate / 2);
          const single = await lone(client, queue, op, c);
          const base = raw.get(`${concurrency}|${name}`)!;
          console.log(
            `${name}, concurrency ${concurrency}, group commit ${group}: ${Math.round(t.rate)}/s (${(t.rate / base).toFixed(2)}× raw), ` +
              `mean ${sizes.mean} jobs per transaction; ${sizes.distribution}${sizes.retried ? `; ${sizes.retried} batch(es) retried alone` : ''}; ` +
              `e2e p50 ${ms(l.e2eP50)} p99 ${ms(l.e2eP99)} at ${Math.round(l.rate)}/s; lone job ${ms(single)}`,
          );
          console.log(
            `  at half rate: until a worker took it p50 ${ms(l.pickupP50)} p99 ${ms(l.pickupP99)}, ` +
              `in the worker p50 ${ms(l.workerP50)} p99 ${ms(l.workerP99)}`,
          );
          console.log('  CPU ms per job, per process:', t.cpu);
          results.push({
            concurrency,
            group,
            case: name,
            rate: t.rate,
            e2eP50: l.e2eP50,
            e2eP99: l.e2eP99,
            raw: base,
          });
          rows.push({
            case: name,
            conc: concurrency,
            group,
            'movements/s': Math.round(t.rate),
            'raw/s': Math.round(base),
            ratio: Number((t.rate / base).toFixed(2)),
            'jobs/tx': sizes.mean,
            'worker ms/job': t.cpu.worker,
            'web ms/job': t.cpu.web,
            'pg ms/job': t.cpu.postgres,
            'at rate/s': Math.round(l.rate),
            'e2e p50': ms(l.e2eP50),
            'e2e p99': ms(l.e2eP99),
            'lone p50': ms(single),
          });
        }
        await stopPlatform();
      }
    }
    console.log(
      '\nthroughput (closed loop), ratio to raw SQL at the same concurrency, latency at half that rate:',
    );
    console.table(rows);

    console.log(
      '\nwhere a lone job transaction goes (sequential, no contention, knex + the lone-job path of the worker in this process):',
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

    // Machine-readable: group commit on at the highest concurrency, each case against the best raw
    // one-transaction-per-movement figure of this run (whatever its concurrency).
    const top = Math.max(...concurrencies);
    const best = (name: string) => Math.max(...concurrencies.map((k) => raw.get(`${k}|${name}`) ?? 0));
    const mine = results.filter((r) => r.group === 'on' && r.concurrency === top);
    const ratio = (name: string) => {
      const r = mine.find((x) => x.case === name);
      return r ? (r.rate / best(name)).toFixed(2) : 'na';
    };
    const p99 = mine.length ? Math.max(...mine.map((r) => r.e2eP99)).toFixed(1) : 'na';
    const line =
      `hot_adjust=${ratio('hot adjust')} hot_reserve=${ratio('hot reserve')} spread_adjust=${ratio('spread adjust')} ` +
      `spread_reserve=${ratio('spread reserve')} p99_ms=${p99}`;
    writeBenchResult({
      bench: 'inventory',
      title: 'Inventory: adjust and reserve jobs through the API (e2e latency at half the closed-loop rate)',
      cases: results.map((r) => ({
        name: `${r.case}, concurrency ${r.concurrency}, group commit ${r.group}`,
        rate: r.rate,
        unit: 'movements/s',
        p50Ms: r.e2eP50,
        p99Ms: r.e2eP99,
        baseline: { name: 'raw SQL, one transaction per movement', rate: r.raw },
      })),
      line,
    });
    console.log(line);
  } finally {
    stopping = true;
    await stopPlatform();
    await queue.close();
    await redis.quit();
    await deleteScratchKeys(env.REDIS_URL ?? 'redis://127.0.0.1:6379', prefix);
    await db.destroy();
    if (!env.BENCH_KEEP_DATABASE) await dropScratchDatabase(databaseUrl);
  }
});
