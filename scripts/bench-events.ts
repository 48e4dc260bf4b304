import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { buildApp } from '../src/api/app.js';
import { openApiDeps, sharedWorkerDeps } from '../src/api/deps.js';
import { parseConfig } from '../src/config.js';
import { openRedis } from '../src/connections.js';
import { createApiKey } from '../src/db/api-keys.js';
import { prepareDatabase } from '../src/db/migrate.js';
import { runEntry } from '../src/entry.js';
import { appendEvent } from '../src/events/outbox.js';
import { createLogger } from '../src/log.js';
import { postJson } from '../src/outbound/http.js';
import { productJobs } from '../src/queues/products.js';
import { signatureHeaders } from '../src/webhooks/signing.js';
import { startWorkers, stopWorkers } from '../src/workers/queue-workers.js';
import { writeBenchResult } from './bench/results.js';
import { benchLimits, deleteScratchKeys, dropScratchDatabase } from './bench/scratch.js';

/**
 * `npm run bench:events`: figures for the event feed, webhook delivery and the live stream, each
 * beside a baseline measured in the same run on the same machine. Uses a scratch database and
 * queue prefix of its own and removes them afterwards. Sizes: BENCH_EVENTS (feed, default 20000),
 * BENCH_DELIVERIES (default 2000), BENCH_STREAM (default 500).
 */
const feedEvents = Number(process.env.BENCH_EVENTS ?? 20_000);
const deliveries = Number(process.env.BENCH_DELIVERIES ?? 2000);
const streamEvents = Number(process.env.BENCH_STREAM ?? 500);

const rate = (n: number, ms: number) => `${Math.round((n * 1000) / ms)}/s`;
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

runEntry(async () => {
  const base = parseConfig();
  const name = `stockflow_bench_events_${process.pid}`;
  const url = new URL(base.DATABASE_URL);
  url.pathname = `/${name}`;
  const config = parseConfig({
    ...process.env,
    DATABASE_URL: url.toString(),
    QUEUE_PREFIX: `bench-events-${process.pid}`,
    LOG_LEVEL: 'warn',
    WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
    WEBHOOK_RELAY_INTERVAL_MS: '100',
    ...benchLimits(),
  });
  await prepareDatabase(config);
  const log = createLogger(config);
  const api = await openApiDeps(config, log);
  const app = await buildApp(api);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const appUrl = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const { key } = await createApiKey(api.db, { name: 'bench', scopes: ['admin'] });
  const workerRedis = await openRedis(config, 'worker');
  const workers = await startWorkers(sharedWorkerDeps(api, { redis: workerRedis }), [
    'products',
    'maintenance',
    'webhooks',
  ]);
  let received = 0;
  const receiver = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      received += 1;
      res.end('ok');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/`;
  const inject = (method: 'GET' | 'POST', path: string, payload?: unknown) =>
    app.inject({
      method,
      url: path,
      payload: payload as object,
      headers: { authorization: `Bearer ${key}` },
    });

  try {
    console.log(`bench:events on ${new Date().toISOString()} (figures are noisy on a shared machine)\n`);

    // 1. Feed paging.
    for (let i = 0; i < feedEvents; i += 1000) {
      await api.db.transaction(async (trx) => {
        for (let j = i; j < Math.min(i + 1000, feedEvents); j++) {
          await appendEvent(trx, {
            type: 'location.updated',
            aggregate: { type: 'bench', id: String(j) },
            data: { j },
          });
        }
      });
    }
    let started = performance.now();
    let after = 0;
    let read = 0;
    for (;;) {
      const page = (await inject('GET', `/api/pms/events?after=${after}&limit=1000`)).json();
      if (page.items.length === 0) break;
      read += page.items.length;
      after = page.nextAfter;
    }
    const apiMs = performance.now() - started;
    started = performance.now();
    after = 0;
    let rawRead = 0;
    for (;;) {
      const rows = await api.db('events').where('seq', '>', after).orderBy('seq').limit(1000);
      if (rows.length === 0) break;
      rawRead += rows.length;
      after = rows[rows.length - 1].seq;
    }
    const rawMs = performance.now() - started;
    console.log('feed: GET /api/pms/events?limit=1000, paging through the whole log');
    console.log(
      `  API (horizon proof + JSON)   ${read} events in ${Math.round(apiMs)} ms = ${rate(read, apiMs)}`,
    );
    console.log(
      `  baseline: raw SQL paging     ${rawRead} events in ${Math.round(rawMs)} ms = ${rate(rawRead, rawMs)}\n`,
    );

    // 2. Webhook deliveries through relay + queue + worker, against direct signed POSTs.
    const created = (
      await inject('POST', '/api/webhooks/endpoints', { url: receiverUrl, eventTypes: ['location.created'] })
    ).json();
    const before = received;
    started = performance.now();
    for (let i = 0; i < deliveries; i += 500) {
      await api.db.transaction(async (trx) => {
        for (let j = i; j < Math.min(i + 500, deliveries); j++) {
          await appendEvent(trx, {
            type: 'location.created',
            aggregate: { type: 'bench', id: String(j) },
            data: { j },
          });
        }
      });
    }
    while (received - before < deliveries) await new Promise((r) => setTimeout(r, 20));
    const queuedMs = performance.now() - started;
    const body = JSON.stringify({
      id: 'x',
      type: 'location.created',
      timestamp: new Date().toISOString(),
      data: {},
    });
    started = performance.now();
    let sent = 0;
    const concurrency = config.concurrency.webhooks;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (sent < deliveries) {
          sent += 1;
          await postJson({
            userAgent: 'Stockflow-Webhooks/1',
            url: receiverUrl,
            body,
            headers: signatureHeaders({ eventId: 'x', body, secrets: [created.secret] }),
            timeoutMs: 15_000,
            allowPrivate: true,
            allowPrivateSetting: 'WEBHOOK_ALLOW_PRIVATE_TARGETS',
          });
        }
      }),
    );
    const directMs = performance.now() - started;
    console.log(`webhooks: ${deliveries} events x 1 endpoint, worker concurrency ${concurrency}`);
    console.log(
      `  relay + queue + worker + DB  ${Math.round(queuedMs)} ms = ${rate(deliveries, queuedMs)} (commit to last receipt)`,
    );
    console.log(
      `  baseline: direct signed POST ${Math.round(directMs)} ms = ${rate(deliveries, directMs)}\n`,
    );
    await inject('POST', `/api/webhooks/endpoints/${created.id}/rotate-secret`);

    // 3. Live stream latency: product jobs, SSE client, event insert to receipt.
    const latencies: number[] = [];
    const streamDone = new Promise<void>((resolve) => {
      http.get(
        `${appUrl}/api/pms/events/stream?types=product.created`,
        { headers: { authorization: `Bearer ${key}` } },
        (res) => {
          res.setEncoding('utf8');
          let buffer = '';
          res.on('data', (chunk: string) => {
            buffer += chunk;
            for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
              const frame = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              const data = frame.split('\n').find((l) => l.startsWith('data: '));
              if (!data) continue;
              latencies.push(Date.now() - Date.parse(JSON.parse(data.slice(6)).occurredAt));
              if (latencies.length === streamEvents) {
                res.destroy();
                resolve();
              }
            }
          });
        },
      );
    });
    await new Promise((r) => setTimeout(r, 500));
    const jobs = [];
    for (let i = 0; i < streamEvents; i++) {
      jobs.push(
        await api.queues.products.add(productJobs.create.name, {
          payload: { sku: `B-${i}`, name: 'bench', price: { amount: 1, currency: 'EUR' }, status: 'draft' },
          meta: { actor: 'bench' },
        }),
      );
      await new Promise((r) => setTimeout(r, 5));
    }
    await streamDone;
    const jobMs: number[] = [];
    for (const job of jobs) {
      const done = await api.queues.products.getJob(job.id!);
      if (done?.finishedOn) jobMs.push(done.finishedOn - done.timestamp);
    }
    latencies.sort((a, b) => a - b);
    jobMs.sort((a, b) => a - b);
    const perSecond = (n: number, elapsedMs: number) => (n * 1000) / elapsedMs;
    writeBenchResult({
      bench: 'events',
      title: 'Events: feed paging, webhook deliveries, SSE latency',
      cases: [
        {
          name: 'feed paging (API, limit 1000)',
          rate: perSecond(read, apiMs),
          unit: 'events/s',
          baseline: { name: 'raw SQL paging', rate: perSecond(rawRead, rawMs) },
        },
        {
          name: 'webhook delivery (relay + queue + worker, commit to receipt)',
          rate: perSecond(deliveries, queuedMs),
          unit: 'deliveries/s',
          baseline: { name: 'direct signed POSTs', rate: perSecond(deliveries, directMs) },
        },
        {
          name: 'SSE latency (event insert to receipt)',
          p50Ms: percentile(latencies, 0.5),
          p99Ms: percentile(latencies, 0.99),
          baseline: {
            name: 'job enqueue to done',
            p50Ms: percentile(jobMs, 0.5),
            p99Ms: percentile(jobMs, 0.99),
          },
        },
      ],
    });
    console.log(`stream: ${streamEvents} product.create jobs, SSE client on the same machine`);
    console.log(
      `  event insert -> SSE receipt    p50 ${percentile(latencies, 0.5)} ms  p95 ${percentile(latencies, 0.95)} ms  p99 ${percentile(latencies, 0.99)} ms`,
    );
    console.log(
      `  baseline: job enqueue -> done p50 ${percentile(jobMs, 0.5)} ms  p95 ${percentile(jobMs, 0.95)} ms  p99 ${percentile(jobMs, 0.99)} ms`,
    );
  } finally {
    receiver.close();
    await stopWorkers(workers, 10_000);
    await workerRedis.quit();
    await app.close();
    await api.close();
    await deleteScratchKeys(config.REDIS_URL, config.QUEUE_PREFIX);
    await dropScratchDatabase(config.DATABASE_URL);
  }
});
