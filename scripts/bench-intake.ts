import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import autocannon from 'autocannon';
import { parseConfig } from '../src/config.js';
import { createApiKey } from '../src/db/api-keys.js';
import { createDb } from '../src/db/knex.js';
import { prepareDatabase } from '../src/db/migrate.js';
import { cpuSecondsOf, startCompiled, stopProcess } from './bench/processes.js';
import { writeBenchResult } from './bench/results.js';
import { benchLimits, deleteScratchKeys, dropScratchDatabase, freePort } from './bench/scratch.js';

/**
 * `npm run bench:intake`: POST /api/pms/products through the real web process (auth, zod,
 * enqueue, 202), against two baselines measured in the same run on a server this script starts:
 * a route that only answers 202, and a route that validates the same zod schema and calls
 * queue.add. Stockflow is measured three ways: alone; with a worker process draining the queue
 * at a lower CPU priority (as when workers run on their own machines, which they do in
 * production); and with that worker at the same priority, sharing this machine's cores.
 * Options (env): BENCH_SECONDS (default 10), BENCH_CONNECTIONS (default 10).
 */
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 10);

const id = randomBytes(4).toString('hex');
const base = parseConfig();
const dbUrl = new URL(base.DATABASE_URL);
dbUrl.pathname = `/stockflow_bench_${id}`;
const env = {
  ...process.env,
  DATABASE_URL: dbUrl.toString(),
  QUEUE_PREFIX: `sfbench-${id}`,
  LOG_LEVEL: 'warn',
  HOST: '127.0.0.1',
  ...benchLimits(),
} as Record<string, string>;
const config = parseConfig(env);

const startProcess = (
  script: string,
  args: string[],
  extraEnv: Record<string, string>,
  ready: RegExp | { url: string },
  niceness = 0,
) => startCompiled(script, args, { ...env, ...extraEnv }, ready, niceness);
const stop = stopProcess;
const cpuSeconds = (child: ChildProcess) => cpuSecondsOf(child.pid!);

interface Figures {
  label: string;
  rps: number;
  /** CPU time the serving process spent per request: robust on a busy machine, unlike req/s. */
  cpuMsPerRequest: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

async function load(
  label: string,
  url: string,
  headers: Record<string, string>,
  server: ChildProcess,
  duration = seconds,
): Promise<Figures> {
  let n = 0;
  const cpuBefore = cpuSeconds(server);
  const result = await autocannon({
    url,
    connections,
    duration,
    requests: [
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        setupRequest: (request) => {
          n++;
          return {
            ...request,
            body: JSON.stringify({
              sku: `B-${id}-${n}`,
              name: 'Bench',
              price: { amount: 1000, currency: 'EUR' },
            }),
          };
        },
      },
    ],
  });
  return {
    label,
    rps: result.requests.average,
    cpuMsPerRequest: ((cpuSeconds(server) - cpuBefore) * 1000) / Math.max(1, result.requests.total),
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
  };
}

const print = (f: Figures) =>
  console.log(
    `${f.label.padEnd(44)} ${f.rps.toFixed(0).padStart(7)} req/s   p50 ${f.p50.toFixed(1).padStart(5)} ms   p99 ${f.p99
      .toFixed(1)
      .padStart(
        5,
      )} ms   server CPU ${f.cpuMsPerRequest.toFixed(3)} ms/req   non-2xx ${f.non2xx}  errors ${f.errors}`,
  );

await prepareDatabase(config);
const db = createDb(config);
const { key } = await createApiKey(db, { name: 'bench', scopes: ['pms'] });
const children: ChildProcess[] = [];
try {
  const webPort = await freePort();
  const basePort = await freePort();
  const web = await startProcess(
    'src/api/server.js',
    [],
    { PORT: String(webPort) },
    {
      url: `http://127.0.0.1:${webPort}/healthz`,
    },
  );
  children.push(web);
  const baseline = await startProcess(
    'scripts/bench/baseline-server.js',
    [],
    { PORT: String(basePort) },
    /listening/,
  );
  children.push(baseline);
  // The worker logs at info (a line per job, as in production); the web process at warn (no request logs).
  const startWorker = (niceness: number) =>
    startProcess(
      'src/workers/main.js',
      ['--queues', 'products'],
      { LOG_LEVEL: 'info' },
      /worker started/,
      niceness,
    );
  const stockflowRun = (label: string) =>
    load(label, `http://127.0.0.1:${webPort}/api/pms/products`, { authorization: `Bearer ${key}` }, web);

  console.log(
    `intake benchmark: ${seconds} s per case, ${connections} connections, web and baseline as separate processes`,
  );
  const bare = await load(
    'baseline 1: bare route answering 202',
    `http://127.0.0.1:${basePort}/bare`,
    {},
    baseline,
  );
  print(bare);
  const enqueue = await load(
    'baseline 2: zod + queue.add',
    `http://127.0.0.1:${basePort}/enqueue`,
    {},
    baseline,
  );
  print(enqueue);

  const runs: { figures: Figures; workerCpu: number }[] = [];
  runs.push({ figures: await stockflowRun('stockflow, no worker running'), workerCpu: 0 });
  for (const niceness of [10, 0]) {
    const worker = await startWorker(niceness);
    children.push(worker);
    const before = cpuSeconds(worker);
    const label = niceness
      ? 'stockflow, worker draining (nice 10)'
      : 'stockflow, worker draining (same priority)';
    runs.push({ figures: await stockflowRun(label), workerCpu: cpuSeconds(worker) - before });
    await stop(worker);
  }
  for (const { figures, workerCpu } of runs) {
    print(figures);
    console.log(
      `    ratio to baseline 2: ${(figures.rps / enqueue.rps).toFixed(2)} (target >= 0.5 with p99 <= 10 ms)` +
        `   to baseline 1: ${(figures.rps / bare.rps).toFixed(2)}` +
        `   CPU per request baseline 2 / stockflow: ${(enqueue.cpuMsPerRequest / figures.cpuMsPerRequest).toFixed(2)}` +
        `   worker CPU: ${workerCpu.toFixed(1)} s`,
    );
  }
  writeBenchResult({
    bench: 'intake',
    title: 'Intake: POST /api/pms/products through a web process',
    cases: [bare, enqueue, ...runs.map((r) => r.figures)].map((f) => ({
      name: f.label,
      rate: f.rps,
      unit: 'req/s',
      p50Ms: f.p50,
      p99Ms: f.p99,
      ...(f.label.startsWith('stockflow')
        ? { baseline: { name: enqueue.label, rate: enqueue.rps, p50Ms: enqueue.p50, p99Ms: enqueue.p99 } }
        : {}),
    })),
  });
  const created = ((await db.raw('select count(*)::int as n from products')).rows[0] as { n: number }).n;
  console.log(`the workers created ${created} products while the load ran`);
} finally {
  for (const child of children.reverse()) await stop(child);
  await db.destroy();
  await dropScratchDatabase(config.DATABASE_URL);
  await deleteScratchKeys(config.REDIS_URL, config.QUEUE_PREFIX);
}
