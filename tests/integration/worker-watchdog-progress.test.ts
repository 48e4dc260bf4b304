import { randomUUID } from 'node:crypto';
import { type Job, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { type RecreateReason, watchWorkers } from '../../src/workers/watchdog.js';
import { until } from '../helpers/until.js';

/**
 * The watchdog's `no_progress` state, on a real Redis and real BullMQ workers: a worker whose
 * fetch loop hangs with its connections `ready` (what a Redis Cluster failover left behind 1 run
 * in 3: src/workers/watchdog.ts) is replaced once jobs have waited past the bound with a slot
 * free; a worker that is merely busy, or whose queue is paused, is left alone.
 */
const redisUrl = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `test-watchdog-${randomUUID()}`;
const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
const log = pino({ level: 'silent' });
const closers: (() => Promise<unknown>)[] = [];

/** A worker whose wait for the next job never settles, as BullMQ's did after the failover. */
function hung(worker: Worker): Worker {
  // `waitForJob` is private in BullMQ's types: replaced on the instance before its loop starts.
  Object.assign(worker, { waitForJob: () => new Promise(() => undefined) });
  return worker;
}

beforeAll(async () => {
  await connection.ping();
});

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

afterAll(async () => {
  const keys = await connection.keys(`${prefix}:*`);
  if (keys.length > 0) await connection.del(...keys);
  connection.disconnect();
});

function open(name: string) {
  const queue = new Queue(name, { connection, prefix });
  closers.push(() => queue.close());
  return queue;
}

function track(worker: Worker) {
  // Force: a hung worker's graceful close would wait on its wait forever.
  closers.push(() => worker.close(true));
  return worker;
}

/** Watches `workers` with a 300 ms bound; a replacement is recorded, and `fresh()` takes the stuck one's place. */
function watch(queue: Queue, workers: Worker[], fresh?: () => Worker) {
  const replaced: RecreateReason[] = [];
  const stop = watchWorkers({
    workers,
    boundMs: 300,
    checkMs: 50,
    log,
    async runnable() {
      return (await queue.isPaused()) ? 0 : queue.getJobCountByTypes('waiting', 'prioritized');
    },
    replace(stuck, reason) {
      replaced.push(reason);
      void stuck.close(true);
      return fresh ? track(fresh()) : stuck;
    },
  });
  closers.push(async () => stop());
  return replaced;
}

it('replaces a worker whose fetch loop hangs with jobs waiting, and the new one runs them', async () => {
  const queue = open('hung');
  const done: string[] = [];
  const processor = async (job: Job) => {
    done.push(job.id!);
  };
  const stuck = track(hung(new Worker(queue.name, processor, { connection, prefix, autorun: false })));
  void stuck.run();
  await stuck.waitUntilReady();
  const replaced = watch(queue, [stuck], () => new Worker(queue.name, processor, { connection, prefix }));
  await queue.addBulk([1, 2, 3].map((n) => ({ name: 'job', data: {}, opts: { jobId: `job-${n}` } })));

  await until(
    'the jobs ran',
    async () => done.length,
    (n) => n === 3,
    10_000,
    50,
  );
  expect(replaced).toEqual(['no_progress']);
  expect(done.sort()).toEqual(['job-1', 'job-2', 'job-3']);
});

it('leaves alone a worker busy at its concurrency while jobs wait, and one whose queue is paused', async () => {
  const busyQueue = open('busy');
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const busy = track(new Worker(busyQueue.name, () => held, { connection, prefix, concurrency: 1 }));
  const replacedBusy = watch(busyQueue, [busy]);
  await busyQueue.addBulk([1, 2].map((n) => ({ name: 'job', data: {}, opts: { jobId: `busy-${n}` } })));

  const pausedQueue = open('paused');
  await pausedQueue.pause();
  const idle = track(new Worker(pausedQueue.name, async () => undefined, { connection, prefix }));
  const replacedPaused = watch(pausedQueue, [idle]);
  await pausedQueue.add('job', {}, { jobId: 'paused-1' });

  // Ten bounds: long enough for any replacement to have happened.
  await new Promise((resolve) => setTimeout(resolve, 3000));
  expect(await busyQueue.getJobCountByTypes('waiting')).toBe(1);
  expect(await pausedQueue.getJobCountByTypes('waiting')).toBe(1);
  expect(replacedBusy).toEqual([]);
  expect(replacedPaused).toEqual([]);
  release();
  await until(
    'the busy worker ran both',
    () => busyQueue.getJobCountByTypes('completed'),
    (n) => n === 2,
    10_000,
    50,
  );
}, 20_000);
