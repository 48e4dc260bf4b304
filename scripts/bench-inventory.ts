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

  const port = await freePort();
  const settings = {
    DATABASE_URL: databaseUrl,
    QUEUE_PREFIX: prefix,
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: env.BENCH_LOG_LEVEL ?? 'warn',
    WORKER_CONCURRENCY_INVENTORY: String(workerConcurrency),
    ...benchLimits(),
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
    await redis.quit();
    await deleteScratchKeys(env.REDIS_URL ?? 'redis://127.0.0.1:6379', prefix);
    await db.destroy();
    if (!env.BENCH_KEEP_DATABASE) await dropScratchDatabase(databaseUrl);
  }
});
