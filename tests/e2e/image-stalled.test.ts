import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Knex } from 'knex';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestContext, exitOf, json, type TestContext, waitForOutput } from '../helpers/context.js';
import { imageUpload, noiseJpeg } from '../helpers/images.js';
import { until } from '../helpers/until.js';

/**
 * An image job whose workers die under it twice: BullMQ fails it as stalled in a third worker,
 * without running it. It must still end like any failed image job: `image.failed` written, the
 * staged bytes dropped, and the renditions it had already stored removed.
 */

let ctx: TestContext;
let mediaDir: string;
const sku = 'STALL-1';

beforeAll(async () => {
  mediaDir = await mkdtemp(path.join(os.tmpdir(), 'stockflow-media-'));
  ctx = await createTestContext({
    workers: ['products'],
    env: {
      MEDIA_DIR: mediaDir,
      // A dead worker's job is taken over after about a second.
      WORKER_LOCK_DURATION_MS: '1000',
      // The job waits on the test's row lock for as long as the test holds it.
      DATABASE_WORKER_LOCK_TIMEOUT_MS: '0',
      DATABASE_API_IDLE_IN_TRANSACTION_TIMEOUT_MS: '0',
    },
  });
});
let hold: Knex.Transaction | undefined;
afterAll(async () => {
  if (hold && !hold.isCompleted()) await hold.rollback();
  await ctx.close();
  await rm(mediaDir, { recursive: true, force: true });
});

/** Sessions of the test database waiting for a lock: the job has stored its files and waits to record them. */
const lockWaiters = async () =>
  Number(
    (
      await ctx.api.db.raw(
        `select count(*) as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
      )
    ).rows[0].n,
  );

const filesUnder = async (dir: string) =>
  (await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])).filter((e) => e.isFile());

it('records image.failed and cleans up when BullMQ fails a job as stalled after two dead workers', async () => {
  await ctx.request({
    method: 'POST',
    url: '/api/pms/products',
    headers: { prefer: 'wait=10' },
    payload: { sku, name: 'Vase', price: { amount: 100, currency: 'EUR' } },
  });
  let worker = ctx.spawnWorker(['--queues', 'images']);
  await waitForOutput(worker, /"queue":"images".*worker started/);
  const first = imageUpload(await noiseJpeg(320, 240, 1), { fields: { role: 'main' } });
  const created = await ctx.request({
    method: 'POST',
    url: `/api/pms/products/${sku}/images`,
    payload: first.payload,
    headers: { ...first.headers, prefer: 'wait=20' },
  });
  expect(created.statusCode, created.body).toBe(201);
  const imageId = json(created).image.id as string;
  const imageDir = path.join(mediaDir, sku, imageId);
  const firstFiles = (await filesUnder(imageDir)).map((f) => f.name).sort();

  // Version 2 stores its renditions, then waits on this lock to record them.
  hold = await ctx.api.db.transaction();
  await hold.raw('select 1 from images where id = ? for no key update', [imageId]);
  const secondBytes = await noiseJpeg(400, 300, 2);
  const second = imageUpload(secondBytes);
  const accepted = await ctx.request({
    method: 'POST',
    url: `/api/pms/products/${sku}/images/${imageId}/versions`,
    payload: second.payload,
    headers: second.headers,
  });
  expect(accepted.statusCode).toBe(202);
  const jobId = json(accepted).id as string;
  const sha = createHash('sha256').update(secondBytes).digest('hex');
  const secondDir = path.join(imageDir, sha.slice(0, 16));

  for (let death = 1; death <= 2; death++) {
    await until('the job waiting on the lock', lockWaiters, (n) => n === 1, 30_000, 50);
    expect((await filesUnder(secondDir)).length).toBeGreaterThan(0);
    worker.kill('SIGKILL');
    await exitOf(worker);
    // Postgres notices a dead client only when it next talks to it; in production the worker's
    // lock_timeout ends the orphaned wait. Here the test ends it, and so the dead transaction.
    await ctx.api.db.raw(
      `select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
    );
    await until('the dead transaction gone', lockWaiters, (n) => n === 0, 30_000, 50);
    worker = ctx.spawnWorker(['--queues', 'images']);
  }
  await hold.rollback();

  const status = await ctx.waitForJob(jobId, 30_000);
  expect(status).toMatchObject({ state: 'failed', error: { code: 'job_failed' } });
  const failed = await ctx.api.db('events').where({ type: 'image.failed', aggregate_id: imageId });
  expect(failed).toHaveLength(1);
  expect(failed[0]).toMatchObject({ job_id: jobId, data: { sku, imageId, create: false } });
  expect(await ctx.api.db('image_uploads').where({ image_id: imageId })).toHaveLength(0);
  expect(await filesUnder(secondDir)).toEqual([]);
  expect((await filesUnder(imageDir)).map((f) => f.name).sort()).toEqual(firstFiles);
  expect(await ctx.api.db('image_versions').where({ image_id: imageId })).toHaveLength(1);

  worker.kill('SIGTERM');
  expect(await exitOf(worker)).toBe(0);
}, 120_000);
