import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { cpuSecondsOf } from './bench/processes.js';
import { repoRoot, type ScalePoint, type ScaleResult, writeResult } from './bench/results.js';
import { project, saturationOf } from './bench/scale-model.js';
import { benchLimits, freePort } from './bench/scratch.js';
import { Client, type Operation } from './faults/client.js';
import { seededRandom } from './faults/load.js';
import { PlatformProcess, readProcfile } from './faults/platform.js';
import { createPostgresCluster } from './faults/postgres-cluster.js';
import { RedisCluster } from './faults/redis-cluster.js';
import { RedisServer } from './faults/redis-servers.js';

/**
 * `npm run bench:scale` (docs/scaling.md): the inventory and products mix through the HTTP API
 * with 1, 2 and 4 worker processes and 1 and 2 web processes, started as the Procfile starts them,
 * against one private Postgres (fsync on) and one Redis (AOF everysec) on loopback. Per
 * configuration: jobs/s, efficiency (rate(n) / (n × rate(1))), end-to-end p50/p99 (submit →
 * job completed: a `Prefer: wait` answer, or polling past it), and each process's CPU seconds per
 * 1000 jobs from /proc (web, worker, redis-server, every process of the postmaster), so the
 * limit is named. Writes bench/out/scale.json; the last line is machine-readable.
 * Settings: SCALE_QUICK=1 (a short run), SCALE_JOBS (measured requests per configuration, default
 * 4000, quick 400), SCALE_CONCURRENCY (requests in flight, default 128), SCALE_SKUS (10,000),
 * SCALE_WORKERS (1,2,4), SCALE_WEBS (1,2), SEED, BENCH_SCALE_REDIS (`single`, the default, or
 * `cluster`: a Redis Cluster of 3 masters, AOF everysec each, through REDIS_CLUSTER_NODES; it writes
 * bench/out/scale-cluster.json, and its CPU per job counts every master and names the busiest).
 */

const run = promisify(execFile);
const env = process.env;
const quick = env.SCALE_QUICK === '1';
const jobs = Number(env.SCALE_JOBS ?? (quick ? 400 : 4000));
const warmup = Math.max(50, Math.round(jobs / 10));
const concurrency = Number(env.SCALE_CONCURRENCY ?? 128);
const skuCount = Number(env.SCALE_SKUS ?? 10_000);
const workerCounts = (env.SCALE_WORKERS ?? '1,2,4').split(',').map(Number);
const webCounts = (env.SCALE_WEBS ?? '1,2').split(',').map(Number);
const seed = Number(env.SEED ?? 1);
const redisTopology = (env.BENCH_SCALE_REDIS ?? 'single') as 'single' | 'cluster';
if (redisTopology !== 'single' && redisTopology !== 'cluster') {
  console.error(`BENCH_SCALE_REDIS must be single or cluster, not ${redisTopology}`);
  process.exit(1);
}
const clusterMasters = 3;
const mix = '45% adjust, 20% reserve, 20% product create, 15% product update (distinct skus of 10,000)';

const startedAt = Date.now();
const say = (text: string) =>
  console.log(`[scale +${((Date.now() - startedAt) / 1000).toFixed(0)}s] ${text}`);

/** The mix, one request per call: movements and reservations on random skus, creates, updates of skus never updated before. */
function createMix(random: () => number) {
  let n = 0;
  let updated = 0;
  const sku = () => `S${Math.floor(random() * skuCount)}`;
  return (): { kind: string; method: string; path: string; body: unknown } => {
    n += 1;
    const r = random();
    if (r < 0.45)
      return {
        kind: 'inventory.adjust',
        method: 'POST',
        path: '/api/pms/inventory/adjust',
        body: {
          movements: [{ sku: sku(), location: 'default', delta: 1, reason: 'found', reference: `s-${n}` }],
        },
      };
    if (r < 0.65)
      return {
        kind: 'inventory.reserve',
        method: 'POST',
        path: '/api/pms/inventory/reservations',
        body: { reference: `s-${n}`, lines: [{ sku: sku(), quantity: 1 }] },
      };
    if (r < 0.85)
      return {
        kind: 'product.create',
        method: 'POST',
        path: '/api/pms/products',
        body: { sku: `N-${seed}-${n}`, name: `New ${n}`, price: { amount: 1500, currency: 'EUR' } },
      };
    // Each update takes the next sku never updated in this run: its version is still 1.
    const target = `S${updated++ % skuCount}`;
    return {
      kind: 'product.update',
      method: 'PUT',
      path: `/api/pms/products/${target}`,
      body: { name: `Updated ${n}`, price: { amount: 1700, currency: 'EUR' }, expectedVersion: 1 },
    };
  };
}

const pgrepChildren = (pid: number): number[] => {
  try {
    return execFileSync('pgrep', ['-P', String(pid)])
      .toString()
      .trim()
      .split('\n')
      .map(Number);
  } catch {
    return [];
  }
};
const cpuOrZero = (pid: number | undefined, reaped = false) => {
  if (!pid) return 0;
  try {
    return cpuSecondsOf(pid, { reapedChildren: reaped });
  } catch {
    return 0; // exited
  }
};

type Snapshot = Map<string, number>;

/**
 * CPU seconds so far per process: each web and worker, redis (each master of a cluster as
 * `redis-<n>`), postgres (postmaster + reaped backends + live children), this client.
 */
function snapshot(processes: PlatformProcess[], redisPids: number[], postmaster: number): Snapshot {
  const s: Snapshot = new Map();
  for (const p of processes) s.set(p.name, cpuOrZero(p.pid));
  for (const [i, pid] of redisPids.entries())
    s.set(redisPids.length === 1 ? 'redis' : `redis-${i + 1}`, cpuOrZero(pid));
  s.set(
    'postgres',
    cpuOrZero(postmaster, true) + pgrepChildren(postmaster).reduce((n, pid) => n + cpuOrZero(pid), 0),
  );
  const usage = process.cpuUsage();
  s.set('client', (usage.user + usage.system) / 1e6);
  return s;
}

/** CPU seconds the whole machine has been busy (every process, ours or not): /proc/stat's cpu line. */
function machineBusySeconds(): number {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest is counted in user already).
  const [user, nice, system, , , irq, softirq, steal] = fields as number[];
  return (user! + nice! + system! + irq! + softirq! + (steal ?? 0)) / 100;
}

const classOf = (name: string) => name.replace(/-\d+$/, '');

const percentile = (sorted: number[], p: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

/** `count` requests, `concurrency` in flight, each followed to its job's end; progress every 5 s. */
async function drive(client: Client, next: ReturnType<typeof createMix>, count: number, label: string) {
  let sent = 0;
  let done = 0;
  const timer = setInterval(() => say(`${label}: ${done}/${count} jobs done`), 5000);
  try {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (sent < count) {
          sent += 1;
          const request = next();
          await client.submit({
            ...request,
            key: `scale-${label.replaceAll(' ', '-')}-${sent}`,
            wait: true,
          });
          done += 1;
        }
      }),
    );
  } finally {
    clearInterval(timer);
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'stockflow-scale-'));
  await chmod(dir, 0o755);
  const logs = path.join(dir, 'logs');
  await mkdir(logs);
  const cleanup: (() => Promise<unknown>)[] = [];
  try {
    say(
      `${quick ? 'quick run: ' : ''}${jobs} jobs per configuration (after ${warmup} warm-up), ${concurrency} in flight, ` +
        `workers ${workerCounts.join('/')}, web ${webCounts.join('/')}; ${os.cpus().length} cores; run directory ${dir}`,
    );
    // Production durability: fsync on (the fault suite's clusters turn it off), AOF everysec.
    const pg = await createPostgresCluster(path.join(dir, 'pg'), await freePort(), {
      fsync: 'on',
      full_page_writes: 'on',
    });
    await pg.start();
    cleanup.push(() => pg.stop());
    const postmaster = Number(
      readFileSync(path.join(dir, 'pg', 'data', 'postmaster.pid'), 'utf8').split('\n')[0],
    );
    const cluster =
      redisTopology === 'cluster'
        ? await RedisCluster.create(path.join(dir, 'redis-cluster'), {
            masters: clusterMasters,
            replicas: 0,
            fsync: 'everysec',
            nodeTimeoutMs: 5000,
          })
        : undefined;
    const redis =
      cluster?.nodes[0] ?? new RedisServer('redis', await freePort(), path.join(dir, 'redis'), 'everysec');
    if (cluster) {
      cleanup.push(() => cluster.stop());
      await cluster.start();
    } else {
      cleanup.push(() => redis.stop());
      await redis.start();
    }
    const redisPids = () => cluster?.pids() ?? [redis.child!.pid!];
    const platformEnv: Record<string, string> = {
      NODE_ENV: 'production',
      DATABASE_URL: pg.url('stockflow'),
      REDIS_URL: `redis://127.0.0.1:${redis.port}`,
      ...(cluster ? { REDIS_CLUSTER_NODES: cluster.addresses } : {}),
      QUEUE_PREFIX: 'stockflow',
      ...benchLimits(),
    };
    const procfile = readProcfile(repoRoot);
    const release = procfile.get('release')!;
    const childEnv = { PATH: env.PATH ?? '', ...platformEnv };
    await run(release.argv[0]!, release.argv.slice(1), { cwd: repoRoot, env: childEnv });
    const { stdout } = await run(
      process.execPath,
      ['dist/scripts/keys.js', 'create', '--name', 'scale', '--scope', 'pms'],
      { cwd: repoRoot, env: childEnv },
    );
    const apiKey = stdout.trim().split('\n').at(-1)!.trim();
    await pg.query(
      'stockflow',
      `insert into products (sku, name, price_amount, price_currency)
       select 'S' || n, 'Spread ' || n, 100, 'EUR' from generate_series(0, ${skuCount - 1}) n`,
    );
    await pg.query(
      'stockflow',
      `insert into stock_movements (kind, sku, location, delta, reason, on_hand_after, reserved_after)
       select 'receipt', sku, 'default', 1000000, 'received', 0, 0 from products`,
    );
    await pg.query('stockflow', 'vacuum analyze');
    say(
      `postgres :${pg.port}, ${cluster ? `Redis Cluster ${cluster.addresses} (${clusterMasters} masters)` : `redis :${redis.port}`}; ` +
        `migrated, ${skuCount} skus seeded with stock`,
    );

    const random = seededRandom(seed);
    const next = createMix(random);
    const points: ScalePoint[] = [];
    for (const webs of webCounts) {
      for (const workers of workerCounts) {
        const label = `w${workers}-web${webs}`;
        const processes: PlatformProcess[] = [];
        for (let i = 1; i <= webs; i++) {
          const port = await freePort();
          processes.push(
            new PlatformProcess(
              `web-${i}`,
              procfile.get('web')!,
              { ...platformEnv, PORT: String(port) },
              repoRoot,
              logs,
              `http://127.0.0.1:${port}`,
            ),
          );
        }
        for (let i = 1; i <= workers; i++)
          processes.push(
            new PlatformProcess(
              `worker-${i}`,
              procfile.get('worker')!,
              { ...platformEnv, METRICS_PORT: String(await freePort()) },
              repoRoot,
              logs,
            ),
          );
        try {
          await Promise.all(processes.map((p) => p.start()));
          const webUrls = processes.filter((p) => p.url).map((p) => p.url!);
          const client = () => new Client({ webs: webUrls, apiKey, giveUpMs: 120_000, pollForMs: 300_000 });
          say(`${label}: ${webs} web, ${workers} worker process(es) ready; warming up`);
          await drive(client(), next, warmup, `${label} warm-up`);
          const measured = client();
          const before = snapshot(processes, redisPids(), postmaster);
          const busy0 = machineBusySeconds();
          const t0 = Date.now();
          await drive(measured, next, jobs, label);
          const seconds = (Date.now() - t0) / 1000;
          const after = snapshot(processes, redisPids(), postmaster);
          const machineBusy = (machineBusySeconds() - busy0) / seconds;
          points.push(
            measure(label, workers, webs, seconds, machineBusy, measured.operations, before, after),
          );
        } finally {
          for (const p of processes) {
            await p.terminate();
            p.close();
          }
        }
      }
    }
    for (const p of points) {
      const one = points.find((q) => q.webs === p.webs && q.workers === 1);
      p.efficiency = one ? Number((p.rate / (p.workers * one.rate)).toFixed(3)) : Number.NaN;
    }
    const machineCores = os.cpus().length;
    console.log(
      '\nworkers  web  jobs/s  alone/s  efficiency  p50 ms  p99 ms  limit        CPU s per 1000 jobs',
    );
    for (const p of points)
      console.log(
        `${String(p.workers).padStart(7)}  ${String(p.webs).padStart(3)}  ${p.rate.toFixed(0).padStart(6)}  ${p.dedicatedRate.toFixed(0).padStart(7)}  ${p.efficiency.toFixed(2).padStart(10)}  ` +
          `${String(p.p50Ms).padStart(6)}  ${String(p.p99Ms).padStart(6)}  ${saturationOf(p, machineCores).padEnd(11)}  ` +
          Object.entries(p.cpuPer1000)
            .map(([k, v]) => `${k} ${v.toFixed(2)}`)
            .join(', '),
      );
    const projection = project(points);
    console.log(
      `\nprojection: Postgres ${(projection.postgresCpuPerJob * 1000).toFixed(2)} ms CPU per job = ${projection.jobsPerPostgresCore} jobs/s per core; ` +
        `${cluster ? 'the busiest cluster master' : 'one Redis'} (one thread) ${projection.redisCeilingJobsPerSecond} jobs/s at ${70} % of a core`,
    );
    for (const row of projection.primaries)
      console.log(
        `  ${String(row.cores).padStart(2)}-core primary: Postgres alone ${row.postgresJobsPerSecond} jobs/s = ` +
          `${row.postgresMovementsPerDay.toLocaleString('en')} movements/day or ${row.postgresOrdersPerDay.toLocaleString('en')} orders/day; ` +
          `with ${cluster ? 'the cluster' : 'one Redis'} ${row.jobsPerSecond} jobs/s (limit ${row.limit})`,
      );
    const pointOf = (w: number, web = webCounts[0]!) => points.find((p) => p.workers === w && p.webs === web);
    const top = points.at(-1)!;
    const saturated = saturationOf(top, machineCores);
    const fmt = (v: number | undefined, digits = 1) => (v === undefined ? 'na' : v.toFixed(digits));
    const line =
      workerCounts.map((w) => `scale_rate_w${w}=${fmt(pointOf(w)?.rate)}`).join(' ') +
      ' ' +
      workerCounts
        .filter((w) => w > 1)
        .map((w) => `efficiency_w${w}=${fmt(pointOf(w)?.efficiency, 2)}`)
        .join(' ') +
      ` p99_ms_top=${top.p99Ms} jobs_per_pg_core=${projection.jobsPerPostgresCore} saturated=${saturated}`;
    const result: ScaleResult = {
      kind: 'scale',
      redis: redisTopology,
      ...(cluster ? { redisMasters: clusterMasters } : {}),
      at: new Date().toISOString(),
      quick,
      machineCores,
      mix,
      points,
      saturated,
      projection,
      line,
    };
    say(`wrote ${writeResult(cluster ? 'scale-cluster' : 'scale', result)}`);
    console.log(line);
  } finally {
    for (const step of cleanup.reverse()) await step().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

function measure(
  label: string,
  workers: number,
  webs: number,
  seconds: number,
  machineBusy: number,
  operations: Operation[],
  before: Snapshot,
  after: Snapshot,
): ScalePoint {
  const completed = operations.filter((op) => op.outcome === 'completed' && op.finishedAt !== undefined);
  const others = operations.length - completed.length;
  if (others > 0) {
    const codes = new Map<string, number>();
    for (const op of operations)
      if (op.outcome !== 'completed') {
        const k = `${op.outcome}:${op.code ?? '-'}`;
        codes.set(k, (codes.get(k) ?? 0) + 1);
      }
    say(
      `${label}: ${others} request(s) did not complete: ${[...codes].map(([k, n]) => `${n} ${k}`).join(', ')}`,
    );
  }
  const e2e = completed.map((op) => op.finishedAt! - op.startedAt).sort((a, b) => a - b);
  const delta = new Map([...after].map(([k, v]) => [k, v - (before.get(k) ?? 0)]));
  const byClass = new Map<string, number>();
  for (const [k, v] of delta) byClass.set(classOf(k), (byClass.get(classOf(k)) ?? 0) + v);
  const per1000 = Object.fromEntries(
    [...byClass].map(([k, v]) => [k, Number(((v * 1000) / operations.length).toFixed(3))]),
  );
  const cores = Object.fromEntries([...byClass].map(([k, v]) => [k, Number((v / seconds).toFixed(3))]));
  // Single-threaded processes: each web, each worker, Redis. Postgres is one process per connection.
  const [busyName, busyCpu] = [...delta]
    .filter(([k]) => k !== 'postgres' && k !== 'client')
    .sort((a, b) => b[1] - a[1])[0]!;
  const point: ScalePoint = {
    workers,
    webs,
    jobs: operations.length,
    seconds: Number(seconds.toFixed(2)),
    rate: Number((operations.length / seconds).toFixed(1)),
    efficiency: Number.NaN,
    p50Ms: percentile(e2e, 50),
    p99Ms: percentile(e2e, 99),
    cpuPer1000: per1000,
    cores,
    busiest: { process: busyName, cores: Number((busyCpu / seconds).toFixed(3)) },
    machineBusy: Number(machineBusy.toFixed(3)),
    dedicatedRate: Number(
      (os.cpus().length / ([...delta.values()].reduce((a, b) => a + b, 0) / operations.length)).toFixed(1),
    ),
  };
  const masters = [...delta].filter(([k]) => /^redis-\d+$/.test(k)).map(([, v]) => v);
  if (masters.length > 0)
    point.redisBusiestPer1000 = Number(((Math.max(...masters) * 1000) / operations.length).toFixed(3));
  say(
    `${label}: ${point.rate} jobs/s (${point.dedicatedRate} on a machine of its own), e2e p50 ${point.p50Ms} ms p99 ${point.p99Ms} ms; cores used ` +
      Object.entries(cores)
        .map(([k, v]) => `${k} ${v.toFixed(2)}`)
        .join(', ') +
      `; busiest single process ${busyName} ${point.busiest.cores.toFixed(2)}; ` +
      `machine ${machineBusy.toFixed(2)} of ${os.cpus().length} cores busy (load average ${os.loadavg()[0]!.toFixed(1)})`,
  );
  return point;
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
