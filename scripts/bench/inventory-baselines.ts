import { randomUUID } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Knex } from 'knex';
import pg from 'pg';
import { type BatchInput, inventoryBatch, inventoryJobs } from '../../src/domain/inventory/batch.js';
import { applyJob } from '../../src/workers/group-commit.js';
import {
  type Case,
  cpuPerThousand,
  cpuSnapshot,
  databaseUrl,
  jobsPerCase,
  type Op,
  type Processes,
  percentile,
  pick,
  prefix,
  workerConcurrency,
} from './inventory-settings.js';

/** What `npm run bench:inventory` compares the platform with, and its per-job profile. */

type Bookkeeping = 'none' | 'separate' | 'merged';

/**
 * One job's transaction as raw SQL. Bookkeeping adds what the worker adds to every job (the claim
 * with its settings, and the stored result): `separate` as the worker sends it (two more round
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

export async function rawSql(
  op: Op,
  c: Case,
  procs: Processes,
  mode: Bookkeeping = 'none',
  concurrency = workerConcurrency,
) {
  const cpu0 = cpuSnapshot(procs);
  const pool = new pg.Pool({ connectionString: databaseUrl, max: concurrency });
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
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
 * raw transaction per job, jobs added beforehand with addBulk: no HTTP, no knex, no claim.
 */
export async function bareBullmq(redis: Redis, op: Op, c: Case) {
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
  // A connection of its own, as the platform's worker process has; BullMQ leaves closing it to us.
  const workerConnection = redis.duplicate();
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
    { connection: workerConnection, prefix, concurrency: workerConcurrency },
  );
  worker.on('completed', () => {
    if (++done === jobsPerCase) finish();
  });
  await finished;
  const rate = (jobsPerCase * 1000) / (performance.now() - started);
  await worker.close();
  await workerConnection.quit();
  await queue.obliterate({ force: true });
  await queue.close();
  await pool.end();
  return rate;
}

/** Sequential (no contention) profile of one job's transaction: round trips, time per trip, lock hold. */
export async function profile(db: Knex, op: Op) {
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
    // A lone job: a batch of one through the worker's path (claim, lock step, decide, write, result).
    await applyJob<BatchInput, unknown>(db, inventoryBatch, {
      job: { id: `profile-${op}-${i}-${process.pid}`, queueName: 'inventory', name: op },
      meta: { actor: 'bench' },
      ...(op === 'adjust'
        ? inventoryJobs.adjust({ movements: [{ sku, location: 'default', delta: 1, reason: 'found' }] })
        : inventoryJobs.reserve({ reference: `p-${i}`, lines: [{ sku, quantity: 1 }], ttlSeconds: 900 })),
    });
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
export async function triggerCost() {
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
