import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { buildApp } from '../src/api/app.js';
import { openApiDeps, sharedWorkerDeps } from '../src/api/deps.js';
import { parseConfig } from '../src/config.js';
import { openRedis } from '../src/connections.js';
import { createApiKey } from '../src/db/api-keys.js';
import { createDb } from '../src/db/knex.js';
import { ensureDatabase, migrateLatest } from '../src/db/migrate.js';
import { runEntry } from '../src/entry.js';
import { createLogger } from '../src/log.js';
import { getJobStatus } from '../src/queues/job-status.js';
import { startWorkers, stopWorkers } from '../src/workers/queue-workers.js';
import { writeBenchResult } from './bench/results.js';
import { benchLimits, deleteScratchKeys, dropScratchDatabase } from './bench/scratch.js';

/**
 * `npm run bench:images`: images/s and peak RSS for 12-megapixel JPEGs through the whole pipeline
 * (multipart intake, staging in Postgres, queue, images worker, local storage, the version's
 * transaction) at worker concurrency 1 and 2, next to a bare sharp resize of the same images in
 * the same run. Each phase runs in its own process so its peak RSS is its own.
 * `npm run bench:images -- --images 16` sets the number of images per phase (default 8).
 */

interface PhaseResult {
  phase: string;
  concurrency: number;
  images: number;
  seconds: number;
  imagesPerSecond: number;
  peakRssMiB: number;
}

const script = fileURLToPath(import.meta.url);
const peakRssMiB = () => Math.round(process.resourceUsage().maxRSS / 1024);

/** A photo-like 4000 x 3000 JPEG: smooth gradients with fine grain; `seed` makes the bytes unique. */
async function photo(seed: number): Promise<Buffer> {
  const width = 4000;
  const height = 3000;
  const gradient = Buffer.alloc(64 * 48 * 3);
  for (let y = 0; y < 48; y++) {
    for (let x = 0; x < 64; x++) {
      const i = (y * 64 + x) * 3;
      gradient[i] = (x * 4 + seed * 13) & 255;
      gradient[i + 1] = (y * 5 + 40) & 255;
      gradient[i + 2] = ((x + y) * 2 + 90) & 255;
    }
  }
  const grain = await sharp({
    create: {
      width,
      height,
      channels: 3,
      background: '#000',
      noise: { type: 'gaussian', mean: 0, sigma: 12 },
    },
  })
    .raw()
    .toBuffer();
  return sharp(gradient, { raw: { width: 64, height: 48, channels: 3 } })
    .resize(width, height, { kernel: 'cubic' })
    .composite([{ input: grain, raw: { width, height, channels: 3 }, blend: 'add' }])
    .jpeg({ quality: 88 })
    .toBuffer();
}

function multipartBody(file: Buffer): { payload: Buffer; contentType: string } {
  const boundary = `bench${randomBytes(8).toString('hex')}`;
  return {
    payload: Buffer.concat([
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`,
      ),
      file,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]),
    contentType: `multipart/form-data; boundary=${boundary}`,
  };
}

/** Bare sharp: decode, resize to the largest variant, encode JPEG; `concurrency` images at a time. */
async function baselinePhase(files: Buffer[], concurrency: number): Promise<PhaseResult> {
  await sharp(files[0]!).resize(1600, 1600, { fit: 'inside' }).jpeg().toBuffer(); // warm-up
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < files.length) {
        const file = files[next++]!;
        await sharp(file).resize(1600, 1600, { fit: 'inside' }).jpeg().toBuffer();
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return result('bare sharp resize', concurrency, files.length, seconds);
}

/** The whole pipeline: web (inject) + images worker in this process, as `npm start` runs them. */
async function pipelinePhase(files: Buffer[], concurrency: number, label: string): Promise<PhaseResult> {
  const config = parseConfig();
  const log = createLogger(config, 'bench-images');
  const api = await openApiDeps(config, log);
  const app = await buildApp(api);
  const { key } = await createApiKey(api.db, { name: `bench-${process.pid}`, scopes: ['pms'] });
  const sku = `BENCH-${process.pid}`;
  await api.db('products').insert({ sku, name: 'Bench', price_amount: 100, price_currency: 'EUR' });
  const workerRedis = await openRedis(config, 'worker');
  const workers = await startWorkers(sharedWorkerDeps(api, { redis: workerRedis }), ['images']);

  const submit = async (file: Buffer) => {
    const { payload, contentType } = multipartBody(file);
    const res = await app.inject({
      method: 'POST',
      url: `/api/pms/products/${sku}/images`,
      payload,
      headers: { authorization: `Bearer ${key}`, 'content-type': contentType },
    });
    if (res.statusCode !== 202) throw new Error(`upload answered ${res.statusCode}: ${res.body}`);
    return (JSON.parse(res.body) as { id: string }).id;
  };
  const settle = async (ids: string[]) => {
    for (const id of ids) {
      for (;;) {
        const status = await getJobStatus(api.queues, id);
        if (status?.state === 'failed') throw new Error(`job ${id} failed: ${JSON.stringify(status.error)}`);
        if (status?.state === 'completed') break;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };
  try {
    await settle([await submit(await photo(9999))]); // warm-up: loads sharp, fills pools
    const started = performance.now();
    const ids: string[] = [];
    for (const file of files) ids.push(await submit(file));
    await settle(ids);
    const seconds = (performance.now() - started) / 1000;
    return result(label, concurrency, files.length, seconds);
  } finally {
    await stopWorkers(workers, 30_000);
    await workerRedis.quit();
    await app.close();
    await api.close();
  }
}

function result(phase: string, concurrency: number, images: number, seconds: number): PhaseResult {
  return {
    phase,
    concurrency,
    images,
    seconds: Number(seconds.toFixed(2)),
    imagesPerSecond: Number((images / seconds).toFixed(2)),
    peakRssMiB: peakRssMiB(),
  };
}

async function runChild(args: string[], env: Record<string, string>): Promise<PhaseResult> {
  return new Promise((resolve, reject) => {
    const child = fork(script, args, {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
    let outcome: PhaseResult | undefined;
    child.on('message', (message) => {
      outcome = message as PhaseResult;
    });
    child.on('exit', (code) =>
      outcome ? resolve(outcome) : reject(new Error(`phase ${args.join(' ')} exited ${code}`)),
    );
  });
}

runEntry(async () => {
  const { values } = parseArgs({
    options: {
      phase: { type: 'string' },
      concurrency: { type: 'string' },
      files: { type: 'string' },
      label: { type: 'string' },
      images: { type: 'string', default: '8' },
    },
  });
  const count = Number(values.images);
  if (!Number.isInteger(count) || count < 1) throw new Error('--images must be a positive integer');
  if (values.phase) {
    const files = await Promise.all(
      Array.from({ length: count }, (_, i) => readFile(path.join(values.files!, `photo-${i}.jpg`))),
    );
    const concurrency = Number(values.concurrency);
    const outcome =
      values.phase === 'baseline'
        ? await baselinePhase(files, concurrency)
        : await pipelinePhase(files, concurrency, values.label ?? 'pipeline');
    process.send!(outcome);
    return;
  }

  const config = parseConfig();
  const work = await mkdtemp(path.join(os.tmpdir(), 'stockflow-bench-images-'));
  const database = `stockflow_bench_images_${process.pid}`;
  const url = new URL(config.DATABASE_URL);
  url.pathname = `/${database}`;
  try {
    console.log(`generating ${count} distinct 12-megapixel JPEGs (4000 x 3000)...`);
    for (let i = 0; i < count; i++) await writeFile(path.join(work, `photo-${i}.jpg`), await photo(i));
    const sample = await readFile(path.join(work, 'photo-0.jpg'));
    console.log(
      `each about ${(sample.length / 1024 / 1024).toFixed(1)} MiB; ${os.availableParallelism()} cores\n`,
    );

    await ensureDatabase(url.toString());
    const db = createDb({ DATABASE_URL: url.toString(), DATABASE_POOL_MAX: 2 });
    await migrateLatest(db);
    await db.destroy();

    const images = ['--images', String(count)];
    const limits = benchLimits();
    const env = (extra: Record<string, string>) => ({
      DATABASE_URL: url.toString(),
      QUEUE_PREFIX: `sfbench-${process.pid}`,
      MEDIA_DIR: path.join(work, 'media'),
      LOG_LEVEL: 'warn',
      ...limits,
      ...extra,
    });
    const results: PhaseResult[] = [];
    for (const concurrency of [1, 2]) {
      const c = String(concurrency);
      results.push(
        await runChild(['--phase', 'baseline', '--concurrency', c, '--files', work, ...images], env({})),
      );
      results.push(
        await runChild(
          [
            '--phase',
            'pipeline',
            '--concurrency',
            c,
            '--files',
            work,
            '--label',
            'pipeline (webp + jpeg)',
            ...images,
          ],
          env({ WORKER_CONCURRENCY_IMAGES: c }),
        ),
      );
    }
    results.push(
      await runChild(
        [
          '--phase',
          'pipeline',
          '--concurrency',
          '1',
          '--files',
          work,
          '--label',
          'pipeline + AVIF',
          ...images,
        ],
        env({ WORKER_CONCURRENCY_IMAGES: '1', IMAGE_AVIF: 'true' }),
      ),
    );

    console.log('phase                     jobs  images  seconds  images/s  peak RSS MiB');
    for (const r of results) {
      console.log(
        `${r.phase.padEnd(25)} ${String(r.concurrency).padStart(4)}  ${String(r.images).padStart(6)}  ${r.seconds.toFixed(2).padStart(7)}  ${r.imagesPerSecond.toFixed(2).padStart(8)}  ${String(r.peakRssMiB).padStart(12)}`,
      );
    }
    for (const concurrency of [1, 2]) {
      const bare = results.find((r) => r.phase === 'bare sharp resize' && r.concurrency === concurrency)!;
      const full = results.find((r) => r.phase.startsWith('pipeline (') && r.concurrency === concurrency)!;
      console.log(
        `concurrency ${concurrency}: the pipeline takes ${(bare.imagesPerSecond / full.imagesPerSecond).toFixed(2)}x the time of a bare resize ` +
          '(it decodes once but writes 6 renditions, metadata, placeholder, staging and the version)',
      );
    }
    writeBenchResult({
      bench: 'images',
      title: 'Images: a 12-megapixel JPEG through the whole pipeline',
      cases: results
        .filter((r) => r.phase !== 'bare sharp resize')
        .map((r) => {
          const bare = results.find(
            (b) => b.phase === 'bare sharp resize' && b.concurrency === r.concurrency,
          );
          return {
            name: `${r.phase}, concurrency ${r.concurrency} (peak RSS ${r.peakRssMiB} MiB)`,
            rate: r.imagesPerSecond,
            unit: 'images/s',
            ...(bare ? { baseline: { name: 'bare sharp resize', rate: bare.imagesPerSecond } } : {}),
          };
        }),
    });
    const avif = results.find((r) => r.phase === 'pipeline + AVIF')!;
    const plain = results.find((r) => r.phase.startsWith('pipeline (') && r.concurrency === 1)!;
    console.log(
      `AVIF on: ${(plain.imagesPerSecond / avif.imagesPerSecond).toFixed(2)}x the time per image at concurrency 1`,
    );
  } finally {
    await dropScratchDatabase(url.toString());
    await deleteScratchKeys(parseConfig().REDIS_URL, `sfbench-${process.pid}`);
    await rm(work, { recursive: true, force: true });
  }
});
