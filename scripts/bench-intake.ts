import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import pg from 'pg';
import { parseConfig } from '../src/config.js';
import { createApiKey } from '../src/db/api-keys.js';
import { createDb } from '../src/db/knex.js';
import { prepareDatabase } from '../src/db/migrate.js';

/**
 * `npm run bench:intake`: POST /api/pms/products through the real web process (auth, zod,
 * enqueue, 202) with a worker process draining the queue, against two baselines measured in the
 * same run on a server this script starts: a route that only answers 202, and a route that
 * validates the same zod schema and calls queue.add.
 * Options (env): BENCH_SECONDS (default 10), BENCH_CONNECTIONS (default 50).
 */
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
const distDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

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
} as Record<string, string>;
const config = parseConfig(env);

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Starts a compiled entry point; ready when its output matches `ready`, or when `readyUrl` answers. */
function startProcess(
  script: string,
  args: string[],
  extraEnv: Record<string, string>,
  ready: RegExp | { url: string },
) {
  const child = spawn(process.execPath, [path.join(distDir, script), ...args], {
    env: { ...env, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise<ChildProcess>((resolve, reject) => {
    let seen = '';
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      if (ready instanceof RegExp && ready.test(seen)) resolve(child);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${script} exited ${code}:\n${seen}`)));
    if (!(ready instanceof RegExp)) {
      const poll = () =>
        fetch(ready.url).then(
          (res) => (res.ok ? resolve(child) : setTimeout(poll, 100)),
          () => setTimeout(poll, 100),
        );
      poll();
    }
  });
}

async function stop(child: ChildProcess) {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

interface Figures {
  label: string;
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

async function load(label: string, url: string, headers: Record<string, string>): Promise<Figures> {
  let n = 0;
  const result = await autocannon({
    url,
    connections,
    duration: seconds,
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
      .padStart(5)} ms   non-2xx ${f.non2xx}  errors ${f.errors}`,
  );

await prepareDatabase(config);
const db = createDb(config);
const { key } = await createApiKey(db, { name: 'bench', scopes: ['pms'] });
const children: ChildProcess[] = [];
try {
  const webPort = await freePort();
  const basePort = await freePort();
  // The worker logs at info (a line per job, as in production); the web process at warn (no request logs).
  children.push(
    await startProcess(
      'src/workers/main.js',
      ['--queues', 'products'],
      { LOG_LEVEL: 'info' },
      /worker started/,
    ),
  );
  children.push(
    await startProcess(
      'src/api/server.js',
      [],
      { PORT: String(webPort) },
      { url: `http://127.0.0.1:${webPort}/healthz` },
    ),
  );
  children.push(
    await startProcess('scripts/bench/baseline-server.js', [], { PORT: String(basePort) }, /listening/),
  );

  console.log(
    `intake benchmark: ${seconds} s per case, ${connections} connections, worker process draining products`,
  );
  const bare = await load('baseline 1: bare route answering 202', `http://127.0.0.1:${basePort}/bare`, {});
  print(bare);
  const enqueue = await load('baseline 2: zod + queue.add', `http://127.0.0.1:${basePort}/enqueue`, {});
  print(enqueue);
  const stockflow = await load(
    'stockflow: POST /api/pms/products',
    `http://127.0.0.1:${webPort}/api/pms/products`,
    {
      authorization: `Bearer ${key}`,
    },
  );
  print(stockflow);
  console.log(`ratio stockflow / baseline 1 (bare):        ${(stockflow.rps / bare.rps).toFixed(2)}`);
  console.log(
    `ratio stockflow / baseline 2 (zod+add):     ${(stockflow.rps / enqueue.rps).toFixed(2)}   (target >= 0.5, p99 <= 10 ms)`,
  );
  const redis = new Redis(config.REDIS_URL);
  const waiting = await redis.llen(`${config.QUEUE_PREFIX}:products:wait`);
  const created = ((await db.raw('select count(*)::int as n from products')).rows[0] as { n: number }).n;
  console.log(`worker: ${created} products created so far, ${waiting} jobs still waiting`);
  redis.disconnect();
} finally {
  for (const child of children.reverse()) await stop(child);
  await db.destroy();
  const admin = new pg.Client({ connectionString: base.DATABASE_URL.replace(/\/[^/]*$/, '/postgres') });
  await admin.connect();
  await admin.query(`drop database if exists ${pg.escapeIdentifier(`stockflow_bench_${id}`)} with (force)`);
  await admin.end();
  const redis = new Redis(config.REDIS_URL);
  const keys = await redis.keys(`${config.QUEUE_PREFIX}:*`);
  if (keys.length) await redis.unlink(...keys);
  redis.disconnect();
}
