import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProcessedImage } from '../../src/queues/images.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { type FakeCloudinary, startFakeCloudinary } from '../helpers/fake-cloudinary.js';
import { imageUpload, noiseJpeg } from '../helpers/images.js';

// The SDK reads CLOUDINARY_URL (and from its upload_prefix, http or https) when it is first loaded,
// which happens in the worker's first image job: the fake server must be up and the variable set
// before that. This file runs in its own process, so nothing loaded the SDK earlier.
let fake: FakeCloudinary;
let ctx: TestContext;
let mediaDir: string;
const account = { cloudName: 'demo-cloud', apiKey: '614335564976464', apiSecret: 'fake-secret-&-signed' };
const sku = 'CLD-1';
const base = `/api/pms/products/${sku}/images`;

beforeAll(async () => {
  fake = await startFakeCloudinary(account);
  const cloudinaryUrl = `cloudinary://${account.apiKey}:${encodeURIComponent(account.apiSecret)}@${account.cloudName}?upload_prefix=${fake.origin}`;
  process.env.CLOUDINARY_URL = cloudinaryUrl;
  mediaDir = await mkdtemp(path.join(os.tmpdir(), 'stockflow-media-'));
  ctx = await createTestContext({
    workers: ['images', 'products'],
    env: { CLOUDINARY_URL: cloudinaryUrl, MEDIA_DIR: mediaDir },
  });
  await ctx.request({
    method: 'POST',
    url: '/api/pms/products',
    headers: { prefer: 'wait=10' },
    payload: { sku, name: 'Rug', price: { amount: 8900, currency: 'EUR' } },
  });
});
afterAll(async () => {
  await ctx?.close();
  await fake?.close();
  await rm(mediaDir, { recursive: true, force: true });
  delete process.env.CLOUDINARY_URL;
});

async function processUpload(bytes: Buffer, url = base) {
  const { payload, headers } = imageUpload(bytes);
  const res = await ctx.request({ method: 'POST', url, payload, headers });
  expect(res.statusCode).toBe(202);
  return ctx.waitForJob(json(res).id, 30_000);
}

const uploadsOf = (imageId: string) =>
  fake.requests.filter((r) => r.action === 'upload' && r.publicId?.includes(`/${imageId}/`));

describe('Cloudinary storage through the real SDK against a fake upload API', () => {
  let imageId: string;

  it('uploads every rendition under a deterministic public_id, signed, and builds f_auto,q_auto URLs with the version', async () => {
    const bytes = await noiseJpeg(1200, 900, 11);
    const status = await processUpload(bytes);
    expect(status).toMatchObject({ state: 'completed', attemptsMade: 1 });
    const image = (status.result as ProcessedImage).image;
    imageId = image.id;
    expect(image.current.storage).toBe('cloudinary');

    const uploads = uploadsOf(imageId);
    expect(uploads).toHaveLength(6); // 3 variants x (webp, jpeg)
    expect(uploads.every((u) => u.signatureOk && u.status === 200)).toBe(true);
    expect(uploads.every((u) => u.params.overwrite === '1' && u.params.invalidate === '0')).toBe(true);
    const prefix = `stockflow/${sku}/${imageId}/${image.current.sha256.slice(0, 16)}`;
    expect(uploads.map((u) => u.publicId).sort()).toEqual(
      ['large', 'medium', 'thumb'].flatMap((v) => [`${prefix}/${v}_jpeg`, `${prefix}/${v}_webp`]),
    );

    const large = image.current.variants.large!;
    const asset = fake.assets.get(`${prefix}/large_webp`)!;
    expect(large.urls.webp!).toBe(
      `https://res.cloudinary.com/demo-cloud/image/upload/f_auto,q_auto/v${asset.version}/${prefix}/large_webp.webp`,
    );
    // The stored bytes are the variant: 1600 px long edge, never enlarged, so 1200 x 900.
    expect(await sharp(asset.bytes).metadata()).toMatchObject({ format: 'webp', width: 1200, height: 900 });
    expect(await readdir(mediaDir)).toEqual([]); // nothing written locally
  });

  it('retries after a 500 from Cloudinary and overwrites the same public_ids: no duplicate assets', async () => {
    const before = fake.assets.size;
    fake.failNextUploads(1, 500);
    const status = await processUpload(await noiseJpeg(900, 600, 12));
    expect(status).toMatchObject({ state: 'completed', attemptsMade: 2 });
    const id = (status.result as ProcessedImage).image.id;
    const uploads = uploadsOf(id);
    expect(uploads.filter((u) => u.status === 500)).toHaveLength(1);
    const publicIds = new Set(uploads.map((u) => u.publicId));
    expect(publicIds.size).toBe(6);
    expect(fake.assets.size).toBe(before + 6);
    // The retry asked Cloudinary to invalidate what the failed attempt may have left on the CDN.
    const retried = uploads.filter((u) => u.params.invalidate === '1');
    expect(retried.length).toBeGreaterThanOrEqual(6);
    expect([...publicIds].every((p) => fake.assets.get(p!)!.uploads >= 1)).toBe(true);
    expect(Math.max(...[...publicIds].map((p) => fake.assets.get(p!)!.uploads))).toBe(2);
  });

  it('sends invalidate: true for a new version that replaces the current one', async () => {
    const status = await processUpload(await noiseJpeg(800, 800, 13), `${base}/${imageId}/versions`);
    expect(status.state).toBe('completed');
    expect((status.result as ProcessedImage).image.currentVersion).toBe(2);
    const sha = (status.result as ProcessedImage).image.current.sha256.slice(0, 16);
    const v2 = uploadsOf(imageId).filter((u) => u.publicId?.includes(`/${sha}/`));
    expect(v2).toHaveLength(6);
    expect(v2.every((u) => u.params.invalidate === '1' && u.signatureOk)).toBe(true);
  });

  it('fails the upload when the signature does not verify (wrong secret): a retried storage error, not a domain error', async () => {
    const { createCloudinaryStorage } = await import('../../src/images/cloudinary-storage.js');
    const wrong = createCloudinaryStorage(
      {
        cloudName: account.cloudName,
        apiKey: account.apiKey,
        apiSecret: 'not-the-secret',
        uploadPrefix: fake.origin,
      },
      'stockflow',
    );
    const error = await wrong
      .put({
        key: 'probe/one',
        format: 'webp',
        body: await sharp({ create: { width: 4, height: 4, channels: 3, background: '#fff' } })
          .webp()
          .toBuffer(),
        invalidate: false,
      })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'StorageError', status: 401 });
    expect(fake.requests.at(-1)).toMatchObject({ signatureOk: false, status: 401 });
    expect(fake.assets.has('stockflow/probe/one_webp')).toBe(false);
  });

  it('deletes an image’s assets of every version through the signed destroy API', async () => {
    const res = await ctx.request({
      method: 'DELETE',
      url: `${base}/${imageId}`,
      headers: { prefer: 'wait=10' },
    });
    expect(res.statusCode).toBe(200);
    const destroyed = fake.requests.filter(
      (r) => r.action === 'destroy' && r.publicId?.includes(`/${imageId}/`),
    );
    expect(destroyed).toHaveLength(12);
    // The SDK sends destroy's invalidate as "true" (upload's as "1"); both are signed as sent.
    expect(destroyed.every((r) => r.signatureOk && r.params.invalidate === 'true')).toBe(true);
    expect([...fake.assets.keys()].filter((k) => k.includes(`/${imageId}/`))).toEqual([]);
  });
});
