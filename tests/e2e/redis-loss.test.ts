import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freePort } from '../../scripts/bench/scratch.js';
import { createTestContext, exitOf, json, type TestContext, waitForOutput } from '../helpers/context.js';
import { until } from '../helpers/until.js';
import { type Receiver, startReceiver } from '../helpers/webhook-receiver.js';

/**
 * Redis is lost twice while the platform runs (the in-process web API and a spawned worker
 * process for every queue), and nothing is restarted: first FLUSHALL, then a kill -9 and a restart
 * of a Redis without persistence (it comes back empty). After each loss, within `boundMs`:
 * the job schedulers are back, the relay delivers the events committed before and after,
 * reservations expire, deliveries that were pending go out once (the receiver counts successful
 * receipts per webhook-id), and nothing in Postgres is duplicated.
 *
 * The bound follows from the settings below: schedulers are checked every 0.5 s (and on reconnect),
 * the relay runs every 0.1 s, the sweep every 0.3 s for deliveries quiet for 2 s, expiry every
 * 0.5 s. With the defaults (10 s, 0.5 s, 30 s / 2 min, 5 s) the same recovery takes up to about
 * 2.5 minutes for pending deliveries and about 10 s for the rest.
 */
const boundMs = 15_000;

let redis: ChildProcess;
let port: number;
let redisDir: string;
let ctx: TestContext;
let worker: ChildProcess;
let receiver: Receiver;
let answer = 500;
let workerOutput = '';
let endpointSeq = 0;

function startRedis(): ChildProcess {
  const child = spawn(
    'redis-server',
    [
      ...['--port', String(port), '--bind', '127.0.0.1', '--dir', redisDir],
      ...['--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction'],
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout?.on('data', () => undefined);
  return child;
}

beforeAll(async () => {
  port = await freePort();
  redisDir = await mkdtemp(path.join(os.tmpdir(), 'stockflow-redis-'));
  redis = startRedis();
  await waitForOutput(redis, /Ready to accept connections/);
  receiver = await startReceiver({ respond: () => ({ status: answer }) });
  ctx = await createTestContext({
    env: {
      REDIS_URL: `redis://127.0.0.1:${port}`,
      SCHEDULER_CHECK_INTERVAL_MS: '500',
      WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
      WEBHOOK_RELAY_INTERVAL_MS: '100',
      // Two quick attempts, then a retry a minute later: a delivery left pending, its job delayed.
      WEBHOOK_RETRY_SCHEDULE: '200ms,60s',
      WEBHOOK_RETRY_JITTER: '0',
      WEBHOOK_TIMEOUT_MS: '1000',
      WEBHOOK_SWEEP_INTERVAL_MS: '300',
      WEBHOOK_SWEEP_AFTER_MS: '2000',
      RESERVATION_EXPIRY_INTERVAL_MS: '500',
    },
  });
  worker = ctx.spawnWorker();
  worker.stdout?.on('data', (chunk: Buffer) => {
    workerOutput += chunk.toString();
  });
  await waitForOutput(worker, /"queue":"maintenance".*worker started/);
});

afterAll(async () => {
  if (worker && worker.exitCode === null) {
    worker.kill('SIGTERM');
    await exitOf(worker);
  }
  await ctx?.close();
  await receiver?.close();
  redis.kill('SIGTERM');
  await exitOf(redis);
  await rm(redisDir, { recursive: true, force: true });
});

/** A request that Redis may refuse for a moment after an outage (503): tried again until accepted. */
async function accepted(options: Parameters<TestContext['request']>[0]) {
  return until(
    `${options.method} ${options.url}`,
    () => ctx.request({ ...options, headers: { prefer: 'wait=10', ...options.headers } }),
    (res) => res.statusCode === 200 || res.statusCode === 201,
    boundMs,
    100,
  );
}

const createProduct = (sku: string) =>
  accepted({
    method: 'POST',
    url: '/api/pms/products',
    payload: { sku, name: 'Resilient', price: { amount: 100, currency: 'EUR' } },
  });

const reserve = async (ttlSeconds: number) =>
  json(
    await accepted({
      method: 'POST',
      url: '/api/pms/inventory/reservations',
      payload: { reference: `order-${Date.now()}`, lines: [{ sku: 'R-0', quantity: 1 }], ttlSeconds },
    }),
  ).id as string;

async function schedulers(): Promise<string[]> {
  const { maintenance, inventory } = ctx.api.queues;
  const all = [...(await maintenance.getJobSchedulers()), ...(await inventory.getJobSchedulers())];
  return all.map((s) => s.key).sort();
}
const everyScheduler = [
  'expire-reservations',
  'prune-applied-jobs',
  'prune-events',
  'relay-outbox',
  'sweep-deliveries',
];

/** Events the endpoint subscribes to, and how often the receiver took each one in (2xx). */
async function receipts(): Promise<{ id: string; ok: number }[]> {
  const events = await ctx.api
    .db('events')
    .where('seq', '>', endpointSeq)
    .andWhere((w) => w.where('type', 'like', 'product.%').orWhere('type', 'like', 'reservation.%'))
    .orderBy('seq')
    .select('id');
  return events.map(({ id }) => ({
    id,
    ok: receiver.requests.filter((r) => r.webhookId === id && r.status === 200).length,
  }));
}

/** Deliveries left pending with their job delayed a minute: what a lost Redis would strand. */
async function strandPendingDeliveries(skus: string[]): Promise<void> {
  answer = 500;
  for (const sku of skus) await createProduct(sku);
  await until(
    'deliveries failing twice',
    () =>
      ctx.api
        .db('webhook_deliveries as d')
        .join('events as e', 'e.id', 'd.event_id')
        .whereIn('e.aggregate_id', skus)
        .select('d.status', 'd.attempts'),
    (rows) => rows.length === skus.length && rows.every((r) => r.status === 'pending' && r.attempts === 2),
  );
}

async function expectRecovered(lossAt: number, newSkus: string[], reservations: string[]) {
  answer = 200;
  for (const sku of newSkus) await createProduct(sku);
  reservations.push(await reserve(1));
  await until('schedulers re-created', schedulers, (ids) => everyScheduler.every((id) => ids.includes(id)));
  await until(
    'reservations expired',
    () => ctx.api.db('reservations').whereIn('id', reservations).pluck('status'),
    (statuses) => statuses.length === reservations.length && statuses.every((s) => s === 'expired'),
  );
  await until('every event delivered', receipts, (list) => list.every((r) => r.ok >= 1));
  const elapsed = Date.now() - lossAt;
  expect(elapsed).toBeLessThan(boundMs);
  // Once, and stays once: two more sweeps and relay runs change nothing.
  await new Promise((r) => setTimeout(r, 1000));
  expect((await receipts()).filter((r) => r.ok !== 1)).toEqual([]);
  expect(await ctx.api.db('webhook_deliveries').whereNot({ status: 'delivered' })).toEqual([]);
  const created = await ctx.api
    .db('events')
    .where({ type: 'product.created' })
    .groupBy('aggregate_id')
    .havingRaw('count(*) > 1')
    .select('aggregate_id');
  expect(created).toEqual([]);
  const skus = await ctx.api.db('products').pluck('sku');
  expect(new Set(skus).size).toBe(skus.length);
  return elapsed;
}

it('recovers from FLUSHALL and from a Redis restart without persistence, with no process restarted', async () => {
  // The worker saw a Redis that keeps nothing and said so at start.
  expect(workerOutput).toMatch(/Redis has no persistence/);
  await accepted({ method: 'POST', url: '/api/pms/locations', payload: { code: 'L-1', name: 'Main' } });
  await createProduct('R-0');
  await accepted({
    method: 'POST',
    url: '/api/pms/inventory/adjust',
    payload: { movements: [{ sku: 'R-0', location: 'L-1', delta: 100, reason: 'received' }] },
  });
  endpointSeq = Number((await ctx.api.db('events').max('seq as max').first())?.max ?? 0);
  const endpoint = await ctx.request({
    method: 'POST',
    url: '/api/webhooks/endpoints',
    key: ctx.adminKey,
    payload: { url: receiver.url, eventTypes: ['product.*', 'reservation.*'] },
  });
  expect(endpoint.statusCode, endpoint.body).toBe(201);
  receiver.secrets.push(json(endpoint).secret);

  // 1. FLUSHALL: every queue, job, scheduler and claim gone at once.
  await strandPendingDeliveries(['F-1', 'F-2', 'F-3']);
  const reservations = [await reserve(3)];
  const admin = new Redis(port, '127.0.0.1');
  await admin.flushall();
  await admin.quit();
  const flushed = await expectRecovered(Date.now(), ['F-4', 'F-5'], reservations);

  // 2. kill -9 and start again, empty: the connections reconnect, the workers rebuild.
  await strandPendingDeliveries(['K-1', 'K-2']);
  reservations.push(await reserve(3));
  redis.kill('SIGKILL');
  await exitOf(redis);
  const killedAt = Date.now();
  await new Promise((r) => setTimeout(r, 500));
  redis = startRedis();
  await waitForOutput(redis, /Ready to accept connections/);
  const restarted = await expectRecovered(killedAt, ['K-3', 'K-4'], reservations);
  console.log(`recovered within ${flushed} ms of FLUSHALL and ${restarted} ms of the kill`);
}, 120_000);
