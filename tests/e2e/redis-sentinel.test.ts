import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freePort } from '../../scripts/bench/scratch.js';
import { createTestContext, exitOf, type TestContext, waitForOutput } from '../helpers/context.js';
import { until } from '../helpers/until.js';

/**
 * Redis Sentinel (REDIS_SENTINELS, REDIS_SENTINEL_NAME): a master, a replica and a sentinel of
 * their own on spare ports. Every connection role the platform opens (the producer with its rate
 * limits and idempotency claims, pub/sub, the workers, the read cache and its bus) reaches the
 * master through the sentinel, and follows two failovers there and back.
 */
const masterName = 'sft-master';
let dir: string;
let ports: { a: number; b: number; sentinel: number };
const children: ChildProcess[] = [];
let ctx: TestContext;

function start(args: string[], ready: RegExp): Promise<ChildProcess> {
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return waitForOutput(child, ready).then(() => child);
}

const base = (port: number) => [
  ...['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'],
  ...['--maxmemory-policy', 'noeviction', '--dbfilename', `dump-${port}.rdb`],
];

async function sentinel<T>(use: (r: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(ports.sentinel, '127.0.0.1');
  try {
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}

const masterPort = () =>
  sentinel(async (r) =>
    Number(((await r.call('SENTINEL', 'get-master-addr-by-name', masterName)) as string[])[1]),
  );

/** The names of the platform's connections open on the server at `port`. */
async function clientNames(port: number): Promise<string[]> {
  const redis = new Redis(port, '127.0.0.1');
  try {
    const list = (await redis.call('CLIENT', 'LIST')) as string;
    return [...new Set([...list.matchAll(/name=(stockflow-\S+)/g)].map((m) => m[1]!))].sort();
  } finally {
    redis.disconnect();
  }
}

async function failOverTo(port: number) {
  // The sentinel must know the replica (it learns replicas from the master's INFO) before it can promote it.
  await until(
    'the sentinel sees the replica',
    () => sentinel(async (r) => JSON.stringify(await r.call('SENTINEL', 'replicas', masterName))),
    (text) => text.includes(String(port)) && !text.includes('s_down'),
    30_000,
    200,
  );
  await sentinel((r) => r.call('SENTINEL', 'FAILOVER', masterName));
  await until('the failover', masterPort, (p) => p === port, 30_000, 100);
}

/** A product created and waited for, retried while the platform moves to the new master. */
async function createProduct(sku: string) {
  return until(
    `create ${sku}`,
    () =>
      ctx.request({
        method: 'POST',
        url: '/api/pms/products',
        headers: { prefer: 'wait=5', 'idempotency-key': sku },
        payload: { sku, name: sku, price: { amount: 100, currency: 'EUR' } },
      }),
    (res) => res.statusCode === 201,
    30_000,
    200,
  );
}

const roles = [
  'stockflow-cache',
  'stockflow-cache-bus',
  'stockflow-producer',
  'stockflow-subscriber',
  'stockflow-worker',
];

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'stockflow-sentinel-'));
  ports = { a: await freePort(), b: await freePort(), sentinel: await freePort() };
  await start(base(ports.a), /Ready to accept connections/);
  await start(
    [...base(ports.b), '--replicaof', '127.0.0.1', String(ports.a)],
    /MASTER <-> REPLICA sync: Finished/,
  );
  const conf = path.join(dir, 'sentinel.conf');
  await writeFile(
    conf,
    [
      `port ${ports.sentinel}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${masterName} 127.0.0.1 ${ports.a} 1`,
      `sentinel down-after-milliseconds ${masterName} 1000`,
      `sentinel failover-timeout ${masterName} 5000`,
      '',
    ].join('\n'),
  );
  await start([conf, '--sentinel'], /\+monitor master/);
  ctx = await createTestContext({
    env: {
      // Credentials and db would come from here; host and port are the sentinel's to say.
      REDIS_URL: `redis://127.0.0.1:${ports.a}`,
      REDIS_SENTINELS: `127.0.0.1:${ports.sentinel}`,
      REDIS_SENTINEL_NAME: masterName,
    },
    workers: ['products'],
  });
}, 60_000);

afterAll(async () => {
  try {
    await ctx?.close();
  } finally {
    for (const child of children.reverse()) {
      child.kill('SIGTERM');
      await exitOf(child);
    }
    await rm(dir, { recursive: true, force: true });
  }
});

it('reaches the master through the sentinel with every connection, and follows failovers', async () => {
  expect((await createProduct('S-1')).statusCode).toBe(201);
  expect(await clientNames(ports.a)).toEqual(roles);

  await failOverTo(ports.b);
  expect((await createProduct('S-2')).statusCode).toBe(201);
  await until(
    'every connection on the new master',
    () => clientNames(ports.b),
    (names) => names.join() === roles.join(),
    15_000,
    200,
  );

  // And back, so the test's clean-up (which uses REDIS_URL) finds the keys on a master.
  await failOverTo(ports.a);
  expect((await createProduct('S-3')).statusCode).toBe(201);
  const products = await ctx.api.db('products').whereIn('sku', ['S-1', 'S-2', 'S-3']).pluck('sku');
  expect(products.sort()).toEqual(['S-1', 'S-2', 'S-3']);
}, 120_000);
