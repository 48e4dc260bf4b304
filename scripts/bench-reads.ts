import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { parseConfig } from '../src/config.js';
import { createApiKey } from '../src/db/api-keys.js';
import { createDb } from '../src/db/knex.js';
import { prepareDatabase } from '../src/db/migrate.js';
import { cpuSecondsOf, startCompiled, stopProcess } from './bench/processes.js';
import { writeBenchResult } from './bench/results.js';
import { deleteScratchKeys, dropScratchDatabase, freePort } from './bench/scratch.js';

/**
 * `npm run bench:reads`: GET /api/pms/products/:sku and GET /api/pms/inventory/status for a
 * Zipf-skewed sku mix, through two web processes of the same build on the same scratch database:
 * one with the read cache, one with CACHE_ENABLED=false, measured in the same run. Figures:
 * requests/s, p50/p99, and CPU per request of the web process and of the Postgres backends
 * serving it (summed from /proc of the backends connected to the scratch database).
 * Options (env): BENCH_SECONDS (default 10 per case), BENCH_CONNECTIONS (default 10),
 * BENCH_SKUS (default 10000), BENCH_ZIPF (exponent, default 1.0).
 */
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 10);
const skuCount = Number(process.env.BENCH_SKUS ?? 10_000);
const exponent = Number(process.env.BENCH_ZIPF ?? 1.0);

const id = randomBytes(4).toString('hex');
const base = parseConfig();
const dbUrl = new URL(base.DATABASE_URL);
const database = `stockflow_bench_${id}`;
dbUrl.pathname = `/${database}`;
const env = {
  ...process.env,
  DATABASE_URL: dbUrl.toString(),
  QUEUE_PREFIX: `sfbench-${id}`,
  LOG_LEVEL: 'warn',
  HOST: '127.0.0.1',
} as Record<string, string>;
const config = parseConfig(env);

/** A Zipf(s) sampler over ranks 0..n-1 by inverse CDF (rank 0 the most popular). */
function zipfSampler(n: number, s: number): () => number {
  const cdf = new Float64Array(n);
  let total = 0;
  for (let k = 0; k < n; k++) {
    total += 1 / (k + 1) ** s;
    cdf[k] = total;
  }
  return () => {
    const u = Math.random() * total;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/** CPU seconds of each Postgres backend connected to the scratch database, by pid. */
function postgresBackends(): Map<number, number> {
  const cpu = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.startsWith('postgres: ') && cmdline.includes(` ${database} `)) {
        cpu.set(Number(entry), cpuSecondsOf(Number(entry)));
      }
    } catch {
      // The backend exited between the listing and the read.
    }
  }
  return cpu;
}

/**
 * Postgres CPU spent during a case. Backends come and go with the pools, so they are sampled every
 * 200 ms: each backend counts from its first sample (0 if it started during the case) to its last.
 */
function postgresCpuMeter(): { stop(): number } {
  const first = postgresBackends();
  const last = new Map(first);
  const sample = () => {
    for (const [pid, cpu] of postgresBackends()) last.set(pid, cpu);
  };
  const timer = setInterval(sample, 200);
  return {
    stop() {
      clearInterval(timer);
      sample();
      let sum = 0;
      for (const [pid, cpu] of last) sum += cpu - (first.get(pid) ?? 0);
      return sum;
    },
  };
}

interface Figures {
  label: string;
  rps: number;
  p50: number;
  p99: number;
  webCpuMs: number;
  pgCpuMs: number;
  non2xx: number;
  errors: number;
}

const sample = zipfSampler(skuCount, exponent);
const skuOf = (rank: number) => `Z-${String(rank).padStart(6, '0')}`;

async function load(label: string, port: number, key: string, web: ChildProcess): Promise<Figures> {
  let n = 0;
  const webBefore = cpuSecondsOf(web.pid!);
  const pg = postgresCpuMeter();
  const result = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections,
    duration: seconds,
    headers: { authorization: `Bearer ${key}` },
    requests: [
      {
        method: 'GET',
        setupRequest: (request) => {
          const sku = skuOf(sample());
          const path = n++ % 2 === 0 ? `/api/pms/products/${sku}` : `/api/pms/inventory/status?sku=${sku}`;
          return { ...request, path };
        },
      },
    ],
  });
  const total = Math.max(1, result.requests.total);
  return {
    label,
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    webCpuMs: ((cpuSecondsOf(web.pid!) - webBefore) * 1000) / total,
    pgCpuMs: (pg.stop() * 1000) / total,
    non2xx: result.non2xx,
    errors: result.errors,
  };
}

const print = (f: Figures) =>
  console.log(
    `${f.label.padEnd(34)} ${f.rps.toFixed(0).padStart(7)} req/s   p50 ${f.p50.toFixed(1).padStart(5)} ms   p99 ${f.p99
      .toFixed(1)
      .padStart(
        5,
      )} ms   web CPU ${f.webCpuMs.toFixed(3)} ms/req   Postgres CPU ${f.pgCpuMs.toFixed(3)} ms/req` +
      `   non-2xx ${f.non2xx}  errors ${f.errors}`,
  );

await prepareDatabase(config);
const db = createDb(config);
const children: ChildProcess[] = [];
try {
  await db.raw(
    `insert into products (sku, name, price_amount, price_currency, attributes)
     select 'Z-' || lpad(i::text, 6, '0'), 'Product ' || i, 1000 + i, 'EUR', jsonb_build_object('rank', i)
     from generate_series(0, ? - 1) as i`,
    [skuCount],
  );
  await db.raw(
    `insert into stock_movements (kind, sku, location, delta, reason)
     select 'receipt', sku, 'default', 25, 'received' from products`,
  );
  const { key } = await createApiKey(db, { name: 'bench', scopes: ['pms', 'admin'] });
  const start = async (cache: boolean) => {
    const port = await freePort();
    const web = await startCompiled(
      'src/api/server.js',
      [],
      { ...env, PORT: String(port), CACHE_ENABLED: String(cache) },
      { url: `http://127.0.0.1:${port}/healthz` },
    );
    children.push(web);
    return { port, web };
  };
  const off = await start(false);
  const on = await start(true);
  console.log(
    `reads benchmark: ${skuCount} skus, Zipf s=${exponent}, half product reads and half stock status, ` +
      `${connections} connections, ${seconds} s per case; load average before: ${readFileSync('/proc/loadavg', 'utf8').trim()}`,
  );
  // A short pass first, so both processes have warm connection pools (and the cache its hot keys).
  await load('warm-up (cache off)', off.port, key, off.web);
  await load('warm-up (cache on)', on.port, key, on.web);
  const results: Figures[] = [];
  for (const round of [1, 2]) {
    results.push(await load(`cache off, round ${round}`, off.port, key, off.web));
    results.push(await load(`cache on, round ${round}`, on.port, key, on.web));
  }
  for (const f of results) print(f);
  const best = (label: string) =>
    results.filter((f) => f.label.startsWith(label)).sort((a, b) => b.rps - a.rps)[0]!;
  const [bestOff, bestOn] = [best('cache off'), best('cache on')];
  const cache = (await fetch(`http://127.0.0.1:${on.port}/api/ops/cache`, {
    headers: { authorization: `Bearer ${key}` },
  }).then((r) => r.json())) as { caches: Record<string, { hitRatio: number | null }> };
  writeBenchResult({
    bench: 'reads',
    title: `Reads: product and stock status for a Zipf mix of ${skuCount} skus`,
    cases: results.map((f) => ({
      name: f.label,
      rate: f.rps,
      unit: 'req/s',
      p50Ms: f.p50,
      p99Ms: f.p99,
      ...(f.label.startsWith('cache on')
        ? {
            baseline: {
              name: 'cache off (best round)',
              rate: bestOff.rps,
              p50Ms: bestOff.p50,
              p99Ms: bestOff.p99,
            },
          }
        : {}),
    })),
  });
  console.log(
    `cache on / off (best rounds): ${(bestOn.rps / bestOff.rps).toFixed(2)}x req/s, p99 ${bestOn.p99} vs ${bestOff.p99} ms, ` +
      `Postgres CPU per request ${bestOn.pgCpuMs.toFixed(3)} vs ${bestOff.pgCpuMs.toFixed(3)} ms; ` +
      `hit ratio product ${cache.caches.product?.hitRatio?.toFixed(3)}, stock ${cache.caches.stock?.hitRatio?.toFixed(3)}; ` +
      `load average after: ${readFileSync('/proc/loadavg', 'utf8').trim()}`,
  );
} finally {
  for (const child of children.reverse()) await stopProcess(child);
  await db.destroy();
  await dropScratchDatabase(config.DATABASE_URL);
  await deleteScratchKeys(config.REDIS_URL, config.QUEUE_PREFIX);
}
