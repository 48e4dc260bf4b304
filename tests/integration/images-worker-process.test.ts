import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProcessedImage } from '../../src/queues/images.js';
import { createTestContext, exitOf, json, type TestContext, waitForOutput } from '../helpers/context.js';
import { imageUpload, noiseJpeg } from '../helpers/images.js';

let ctx: TestContext;
let mediaDir: string;

beforeAll(async () => {
  mediaDir = await mkdtemp(path.join(os.tmpdir(), 'stockflow-media-'));
  // No in-process image worker: only the separate `worker-images` process can run the job.
  ctx = await createTestContext({ workers: ['products'], env: { MEDIA_DIR: mediaDir } });
});
afterAll(async () => {
  await ctx.close();
  await rm(mediaDir, { recursive: true, force: true });
});

describe('the worker-images process (Procfile: --queues images)', () => {
  it('processes bytes the web process staged in Postgres, and stops cleanly on SIGTERM', async () => {
    await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: { prefer: 'wait=10' },
      payload: { sku: 'PROC-1', name: 'Shelf', price: { amount: 100, currency: 'EUR' } },
    });
    const worker = ctx.spawnWorker(['--queues', 'images']);
    await waitForOutput(worker, /"queue":"images".*worker started/);

    const { payload, headers } = imageUpload(await noiseJpeg(1024, 768, 5), { fields: { role: 'main' } });
    const res = await ctx.request({
      method: 'POST',
      url: '/api/pms/products/PROC-1/images',
      payload,
      headers,
    });
    expect(res.statusCode).toBe(202);
    const status = await ctx.waitForJob(json(res).id, 30_000);
    expect(status.state).toBe('completed');
    const { image } = status.result as ProcessedImage;
    const served = await ctx.request({
      method: 'GET',
      url: image.current.variants.medium!.urls.webp!,
      key: null,
    });
    expect(await sharp(served.rawPayload).metadata()).toMatchObject({ width: 800, height: 600 });

    worker.kill('SIGTERM');
    expect(await exitOf(worker)).toBe(0);
  });
});
