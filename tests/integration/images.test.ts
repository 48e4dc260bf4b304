import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProcessedImage } from '../../src/queues/images.js';
import type { Image, ImageVersion } from '../../src/schemas/images.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import {
  alphaPng,
  animatedGif,
  exifRotatedJpeg,
  hugeHeaderJpeg,
  imageUpload,
  noiseJpeg,
  tiff16,
  truncatedJpeg,
} from '../helpers/images.js';

let ctx: TestContext;
let mediaDir: string;
const sku = 'IMG-1';

beforeAll(async () => {
  mediaDir = await mkdtemp(path.join(os.tmpdir(), 'stockflow-media-'));
  ctx = await createTestContext({
    workers: ['images', 'products'],
    env: { MEDIA_DIR: mediaDir, CDN_BASE_URL: 'https://cdn.example.test/' },
  });
  const created = await ctx.request({
    method: 'POST',
    url: '/api/pms/products',
    headers: { prefer: 'wait=10' },
    payload: { sku, name: 'Lamp', price: { amount: 4999, currency: 'EUR' } },
  });
  expect(created.statusCode).toBe(201);
});
afterAll(async () => {
  await ctx.close();
  await rm(mediaDir, { recursive: true, force: true });
});

const imagesUrl = `/api/pms/products/${sku}/images`;

async function upload(bytes: Buffer, options: Parameters<typeof imageUpload>[1] = {}, url = imagesUrl) {
  const { payload, headers } = imageUpload(bytes, options);
  return ctx.request({ method: 'POST', url, payload, headers });
}

/** Uploads and waits for the job; returns the job's final status. */
async function processUpload(
  bytes: Buffer,
  options: Parameters<typeof imageUpload>[1] = {},
  url = imagesUrl,
) {
  const res = await upload(bytes, options, url);
  expect(res.statusCode).toBe(202);
  return ctx.waitForJob(json(res).id, 30_000);
}

/** GETs a URL the API handed out (CDN base stripped: the web process serves /media itself). */
async function fetchMedia(url: string) {
  const res = await ctx.request({
    method: 'GET',
    url: url.replace('https://cdn.example.test', ''),
    key: null,
  });
  expect(res.statusCode).toBe(200);
  return res;
}

async function eventsOf(imageId: string) {
  return ctx.api.db('events').where({ aggregate_type: 'image', aggregate_id: imageId }).orderBy('seq');
}

describe('image upload and processing (local storage)', () => {
  it('auto-orients an EXIF-rotated JPEG, strips its metadata and serves every variant at its URL', async () => {
    const status = await processUpload(await exifRotatedJpeg(), {
      fields: { role: 'main', alt: 'Lamp, lit' },
    });
    expect(status).toMatchObject({ state: 'completed', attemptsMade: 1 });
    expect(status.progress).toEqual({ stage: 'stored', percent: 100 });
    const { image, deduplicated } = status.result as ProcessedImage;
    expect(deduplicated).toBe(false);
    expect(image).toMatchObject({ sku, role: 'main', alt: 'Lamp, lit', currentVersion: 1 });
    expect(image.current).toMatchObject({
      format: 'jpeg',
      width: 200,
      height: 300,
      orientation: 6,
      hasAlpha: false,
      storage: 'local',
      source: 'upload',
    });
    expect(image.current.dominantColor).toMatch(/^#[0-9a-f]{6}$/);
    expect(image.current.placeholder.thumbhash.length).toBeGreaterThan(10);
    expect(image.current.placeholder.preview).toMatch(/^data:image\/webp;base64,/);
    expect(Object.keys(image.current.variants).sort()).toEqual(['large', 'medium', 'thumb']);

    // Never enlarged: medium and large stay at the original's 200 x 300.
    const thumb = image.current.variants.thumb!;
    expect(thumb).toMatchObject({ width: 133, height: 200 });
    expect(image.current.variants.large!).toMatchObject({ width: 200, height: 300 });
    expect(thumb.urls.webp!).toMatch(
      /^https:\/\/cdn\.example\.test\/media\/IMG-1\/.+\/[0-9a-f]{16}\/thumb\.webp$/,
    );

    for (const [format, url] of Object.entries(thumb.urls as Record<string, string>)) {
      const res = await fetchMedia(url);
      expect(res.headers['cache-control']).toMatch(/max-age=31536000.*immutable/);
      const served = await sharp(res.rawPayload).metadata();
      expect(served).toMatchObject({ format, width: 133, height: 200 });
      expect(served.exif).toBeUndefined(); // GPS and orientation gone
    }
    const jpegLarge = await fetchMedia(image.current.variants.large!.urls.jpeg!);
    expect(await sharp(jpegLarge.rawPayload).metadata()).toMatchObject({
      width: 200,
      height: 300,
      space: 'srgb',
    });

    expect((await eventsOf(image.id)).map((e) => e.type)).toEqual(['image.processed']);
    expect(await ctx.api.db('image_uploads').count('* as n').first()).toEqual({ n: 0 });
  });

  it('keeps the alpha of a PNG in WebP and flattens it in JPEG', async () => {
    const status = await processUpload(await alphaPng(), { filename: 'alpha.png', contentType: 'image/png' });
    const { image } = status.result as ProcessedImage;
    expect(image.current).toMatchObject({ format: 'png', width: 400, height: 300, hasAlpha: true });
    const webp = await sharp(
      (await fetchMedia(image.current.variants.medium!.urls.webp!)).rawPayload,
    ).metadata();
    const jpeg = await sharp(
      (await fetchMedia(image.current.variants.medium!.urls.jpeg!)).rawPayload,
    ).metadata();
    expect(webp).toMatchObject({ hasAlpha: true, width: 400, height: 300 });
    expect(jpeg).toMatchObject({ hasAlpha: false, channels: 3 });
  });

  it('converts a 16-bit TIFF to 8-bit sRGB variants', async () => {
    const status = await processUpload(await tiff16(), { filename: 'scan.tif', contentType: 'image/tiff' });
    expect(status.state).toBe('completed');
    const { image } = status.result as ProcessedImage;
    expect(image.current).toMatchObject({ format: 'tiff', width: 240, height: 160 });
    const thumb = await sharp(
      (await fetchMedia(image.current.variants.thumb!.urls.jpeg!)).rawPayload,
    ).metadata();
    expect(thumb).toMatchObject({ depth: 'uchar', space: 'srgb', width: 200, height: 133 });
  });

  it.each([
    { name: 'a truncated JPEG', make: truncatedJpeg, code: 'image_corrupt', filename: 'cut.jpg' },
    { name: 'a 30,000 x 30,000 header', make: hugeHeaderJpeg, code: 'image_too_large', filename: 'huge.jpg' },
    { name: 'an animated GIF', make: animatedGif, code: 'image_too_large', filename: 'anim.gif' },
  ])(
    'fails $name with $code at once (no retry), writes image.failed and drops the staged bytes',
    async ({ make, code, filename }) => {
      const res = await upload(await make(), { filename });
      expect(res.statusCode).toBe(202);
      const status = await ctx.waitForJob(json(res).id);
      expect(status).toMatchObject({ state: 'failed', attemptsMade: 1, error: { code } });
      const failed = await ctx.api.db('events').where({ type: 'image.failed', job_id: json(res).id });
      expect(failed).toHaveLength(1);
      expect(failed[0].data).toMatchObject({ sku, error: { code }, attempts: 1 });
      expect(await ctx.api.db('images').where({ id: failed[0].aggregate_id }).first()).toBeUndefined();
      expect(await ctx.api.db('image_uploads').count('* as n').first()).toEqual({ n: 0 });
    },
  );

  it('runs a failed upload again when the same bytes are sent again (the failed job is replaced)', async () => {
    const created = await processUpload(await noiseJpeg(64, 64, 21));
    const versions = `${imagesUrl}/${(created.result as ProcessedImage).image.id}/versions`;
    const bytes = await truncatedJpeg();
    const first = await upload(bytes, { filename: 'again.jpg' }, versions);
    await ctx.waitForJob(json(first).id);
    const second = await upload(bytes, { filename: 'again.jpg' }, versions);
    expect(json(second).id).toBe(json(first).id);
    expect(json(second).state).not.toBe('failed');
    const status = await ctx.waitForJob(json(second).id);
    expect(status).toMatchObject({ state: 'failed', attemptsMade: 1, error: { code: 'image_corrupt' } });
    const failures = await ctx.api.db('events').where({ type: 'image.failed', job_id: json(first).id });
    expect(failures).toHaveLength(2);
  });

  it('refuses the 30,000 x 30,000 header from its header, before decoding', async () => {
    const res = await upload(await hugeHeaderJpeg(), {}, imagesUrl);
    const status = await ctx.waitForJob(json(res).id);
    expect(status.error?.details).toMatchObject({ width: 30_000, height: 30_000, maxPixels: 50_000_000 });
    expect(status.progress).toBe(0); // never reached "validated"
  });

  it('fails a PNG declared as image/jpeg with unsupported_media_type (415 when waited for)', async () => {
    const { payload, headers } = imageUpload(await alphaPng(20, 20), { contentType: 'image/jpeg' });
    const res = await ctx.request({
      method: 'POST',
      url: imagesUrl,
      payload,
      headers: { ...headers, prefer: 'wait=10' },
    });
    expect(res.statusCode).toBe(415);
    expect(json(res)).toMatchObject({ code: 'unsupported_media_type', details: { actual: 'png' } });
  });

  it('answers 415 at intake for a text file named .jpg, and 413 for a 25 MiB upload; nothing is staged or queued', async () => {
    const before = await ctx.api.queues.images.getJobCounts();
    const text = await upload(Buffer.from('this is not an image, whatever its name says\n'.repeat(10)), {
      filename: 'photo.jpg',
      contentType: 'image/jpeg',
    });
    expect(text.statusCode).toBe(415);
    expect(json(text)).toMatchObject({ code: 'unsupported_media_type', status: 415 });

    const big = Buffer.concat([await noiseJpeg(64, 64), Buffer.alloc(25 * 1024 * 1024)]);
    const tooBig = await upload(big);
    expect(tooBig.statusCode).toBe(413);
    expect(json(tooBig)).toMatchObject({
      code: 'payload_too_large',
      details: { maxBytes: 20 * 1024 * 1024 },
    });

    expect(await ctx.api.queues.images.getJobCounts()).toEqual(before);
    expect(await ctx.api.db('image_uploads').count('* as n').first()).toEqual({ n: 0 });
    // The JSON body limit of other routes is untouched by the upload limit.
    const bigJson = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      payload: { sku: 'X', name: 'x'.repeat(2 * 1024 * 1024), price: { amount: 1, currency: 'EUR' } },
    });
    expect(bigJson.statusCode).toBe(413);
  });

  it('gives a replayed create with the same Idempotency-Key the same job and the same image', async () => {
    const bytes = await noiseJpeg(120, 90, 42);
    const send = () => {
      const { payload, headers } = imageUpload(bytes);
      return ctx.request({
        method: 'POST',
        url: imagesUrl,
        payload,
        headers: { ...headers, 'idempotency-key': 'img-42' },
      });
    };
    const first = await send();
    const second = await send();
    expect(json(second).id).toBe(json(first).id);
    const status = await ctx.waitForJob(json(first).id);
    const { image } = status.result as ProcessedImage;
    expect(await ctx.api.db('images').where({ id: image.id }).count('* as n').first()).toEqual({ n: 1 });
    const other = await ctx.request({
      method: 'POST',
      url: imagesUrl,
      ...(() => {
        const { payload, headers } = imageUpload(Buffer.concat([bytes, Buffer.from([0])]));
        return { payload, headers: { ...headers, 'idempotency-key': 'img-42' } };
      })(),
    });
    expect(other.statusCode).toBe(422);
    expect(json(other).code).toBe('idempotency_key_reused');
  });

  it('documents the image routes in the OpenAPI document', async () => {
    const doc = json(await ctx.request({ method: 'GET', url: '/docs/json' }));
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/api/pms/products/{sku}/images',
        '/api/pms/products/{sku}/images/{imageId}/versions',
        '/api/pms/products/{sku}/images/{imageId}/rollback',
      ]),
    );
  });

  it('answers 404 at intake for an unknown product or image, and 400 for bad fields', async () => {
    const unknown = await upload(await noiseJpeg(32, 32), {}, '/api/pms/products/NOPE/images');
    expect(unknown.statusCode).toBe(404);
    const noImage = await upload(
      await noiseJpeg(32, 32),
      {},
      `${imagesUrl}/00000000-0000-4000-8000-000000000000/versions`,
    );
    expect(noImage.statusCode).toBe(404);
    const badRole = await upload(await noiseJpeg(32, 32), { fields: { role: 'hero' } });
    expect(badRole.statusCode).toBe(400);
    expect(json(badRole).errors[0]).toMatchObject({ in: 'body', path: 'role' });
    const badUrl = await ctx.request({
      method: 'POST',
      url: imagesUrl,
      payload: { sourceUrl: 'file:///etc/passwd' },
    });
    expect(badUrl.statusCode).toBe(400);
  });
});

describe('versions, dedupe, rollback, delete and the publishing rule', () => {
  const product = 'IMG-V';
  const base = `/api/pms/products/${product}/images`;
  let imageId: string;
  let v1: Buffer;

  beforeAll(async () => {
    await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: { prefer: 'wait=10' },
      payload: { sku: product, name: 'Chair', price: { amount: 12_900, currency: 'EUR' } },
    });
  });

  it('refuses to publish a product without a processed main image', async () => {
    const res = await ctx.request({
      method: 'POST',
      url: `/api/pms/products/${product}/publish`,
      headers: { prefer: 'wait=10' },
    });
    expect(res.statusCode).toBe(422);
    expect(json(res).details.failures).toEqual([expect.objectContaining({ rule: 'main_image_present' })]);
  });

  it('creates an image with Prefer: wait (201), then adds version 2 through /versions', async () => {
    v1 = await noiseJpeg(640, 480, 1);
    const { payload, headers } = imageUpload(v1, { fields: { role: 'main' } });
    const created = await ctx.request({
      method: 'POST',
      url: base,
      payload,
      headers: { ...headers, prefer: 'wait=20' },
    });
    expect(created.statusCode).toBe(201);
    imageId = json(created).image.id;
    expect(json(created).image).toMatchObject({ currentVersion: 1, role: 'main', position: 0 });

    const v2 = await processUpload(
      await noiseJpeg(1000, 500, 2),
      { fields: { alt: 'Side view' } },
      `${base}/${imageId}/versions`,
    );
    expect(v2.state).toBe('completed');
    expect((v2.result as ProcessedImage).image).toMatchObject({
      id: imageId,
      currentVersion: 2,
      alt: 'Side view',
    });

    const versions = json(await ctx.request({ method: 'GET', url: `${base}/${imageId}/versions` })).items;
    expect(versions.map((v: ImageVersion) => [v.version, v.current, v.width])).toEqual([
      [2, true, 1000],
      [1, false, 640],
    ]);
  });

  it('dedupes the same bytes to the same image: the same job, the existing version, nothing new stored', async () => {
    const filesBefore = await readdir(path.join(mediaDir, product, imageId));
    const again = await upload(v1, {}, `${base}/${imageId}/versions`);
    expect(again.statusCode).toBe(202);
    const status = await ctx.waitForJob(json(again).id);
    // The job id is a short hash of the image and the content hash; the first upload's job is returned.
    expect(json(again).id).toMatch(/^images-[A-Za-z0-9_-]{32}$/);
    expect(json(await upload(v1, {}, `${base}/${imageId}/versions`)).id).toBe(json(again).id);
    expect(status.state).toBe('completed');
    expect((status.result as ProcessedImage).image.currentVersion).toBe(1);
    expect(await ctx.api.db('image_versions').where({ image_id: imageId }).count('* as n').first()).toEqual({
      n: 2,
    });
    expect(await readdir(path.join(mediaDir, product, imageId))).toEqual(filesBefore);
    expect(await ctx.api.db('image_uploads').count('* as n').first()).toEqual({ n: 0 });
  });

  it('rolls back to version 1 in a job that writes image.rolled_back; an unknown version is not_found', async () => {
    const res = await ctx.request({
      method: 'POST',
      url: `${base}/${imageId}/rollback`,
      headers: { prefer: 'wait=10' },
      payload: { version: 1 },
    });
    expect(res.statusCode).toBe(200);
    expect(json(res)).toMatchObject({ id: imageId, currentVersion: 1, current: { version: 1, width: 640 } });
    const listed = json(await ctx.request({ method: 'GET', url: base })).items;
    expect(listed.map((i: Image) => [i.id, i.currentVersion])).toEqual([[imageId, 1]]);
    const events = (await eventsOf(imageId)).map((e) => e.type);
    expect(events).toEqual(['image.processed', 'image.processed', 'image.rolled_back']);

    const missing = await ctx.request({
      method: 'POST',
      url: `${base}/${imageId}/rollback`,
      headers: { prefer: 'wait=10' },
      payload: { version: 9 },
    });
    expect(missing.statusCode).toBe(404);
    expect(json(missing)).toMatchObject({ code: 'not_found', details: { version: 9 } });
  });

  it('publishes once the main image is processed, and keeps the main image of a published product', async () => {
    const res = await ctx.request({
      method: 'POST',
      url: `/api/pms/products/${product}/publish`,
      headers: { prefer: 'wait=10' },
    });
    expect(res.statusCode).toBe(200);
    const refused = await ctx.request({
      method: 'DELETE',
      url: `${base}/${imageId}`,
      headers: { prefer: 'wait=10' },
    });
    expect(refused.statusCode).toBe(409);
    expect(json(refused).code).toBe('invalid_transition');
  });

  it('demotes the old main image when a new one is processed, lists by position, and deletes with its files', async () => {
    const second = await processUpload(
      await noiseJpeg(300, 300, 3),
      { fields: { role: 'main', position: '5' } },
      base,
    );
    const newMain = (second.result as ProcessedImage).image.id;
    const listed = json(await ctx.request({ method: 'GET', url: base })).items;
    expect(listed.map((i: Image) => [i.id, i.role, i.position])).toEqual([
      [imageId, 'gallery', 0],
      [newMain, 'main', 5],
    ]);
    const dir = path.join(mediaDir, product, imageId);
    expect((await readdir(dir, { recursive: true })).filter((f) => String(f).includes('.')).length).toBe(12);

    const deleted = await ctx.request({
      method: 'DELETE',
      url: `${base}/${imageId}`,
      headers: { prefer: 'wait=10' },
    });
    expect(deleted.statusCode).toBe(200);
    expect(json(deleted)).toMatchObject({ id: imageId, sku: product });
    const after = json(await ctx.request({ method: 'GET', url: base })).items;
    expect(after.map((i: Image) => i.id)).toEqual([newMain]);
    const files = existsSync(dir)
      ? (await readdir(dir, { recursive: true })).filter((f) => String(f).includes('.'))
      : [];
    expect(files).toEqual([]);
    expect((await eventsOf(imageId)).at(-1)?.type).toBe('image.deleted');
    expect((await ctx.request({ method: 'GET', url: `${base}/${imageId}` })).statusCode).toBe(404);
  });
});
