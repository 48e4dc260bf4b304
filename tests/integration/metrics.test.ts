import type { ChildProcess } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, exitOf, repoRoot, type TestContext, waitForOutput } from '../helpers/context.js';
import { openSse } from '../helpers/sse.js';
import { type Receiver, startReceiver } from '../helpers/webhook-receiver.js';

/**
 * Every metric family after real traffic, on each process type: a web process, a worker process
 * (its METRICS_PORT listener) and the one process of `npm start` (web and workers together, as
 * this test context runs them). Each /metrics passes `promtool check metrics`; the alert rules
 * pass `promtool test rules`; every query of the Grafana dashboard names a metric that exists.
 */
const promtool = spawnSync('promtool', ['--version']).status === 0;
const skipPromtool = !promtool && process.env.CI !== 'true';
if (skipPromtool) {
  console.warn(
    'metrics.test.ts: promtool is not installed, so its checks are skipped here (bash scripts/services.sh --with-prometheus installs it; CI always runs them)',
  );
}

let ctx: TestContext;
let receiver: Receiver;
const children: ChildProcess[] = [];
let workerUrl = '';
const texts: Record<'web' | 'worker' | 'single', string> = { web: '', worker: '', single: '' };

const webFamilies = [
  'stockflow_http_request_duration_seconds',
  'stockflow_http_wait_request_duration_seconds',
  'stockflow_queue_jobs',
  'stockflow_queue_oldest_waiting_seconds',
  'stockflow_stream_connections',
  'stockflow_stock_levels',
  'stockflow_stock_levels_below_safety_stock',
  'stockflow_webhook_endpoints',
  'stockflow_alerts_open',
];
const workerFamilies = [
  'stockflow_job_duration_seconds',
  'stockflow_job_wait_seconds',
  'stockflow_jobs_completed_total',
  'stockflow_jobs_failed_total',
  'stockflow_job_retries_total',
  'stockflow_webhook_attempts_total',
  'stockflow_webhook_attempt_duration_seconds',
  'stockflow_webhook_deliveries_total',
];
const everyProcess = [
  'stockflow_cache_hits_total',
  'stockflow_cache_misses_total',
  'stockflow_cache_stale_serves_total',
  'stockflow_cache_loads_total',
  'stockflow_cache_invalidated_reads_total',
  'stockflow_cache_bypassed_total',
  'stockflow_cache_hit_ratio',
  'stockflow_pg_pool_connections',
  'stockflow_pg_pool_connections_used',
  'stockflow_pg_pool_waiting',
  'stockflow_pg_pool_max',
  'stockflow_nodejs_eventloop_lag_seconds',
  'stockflow_process_cpu_seconds_total',
];

/** Families with at least one sample (`# TYPE` seen and a sample line of the family). */
function familiesWithSamples(text: string): Set<string> {
  const declared = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => m[1]!);
  return new Set(
    declared.filter((family) => new RegExp(`^${family}(_bucket|_sum|_count)?(\\{| )`, 'm').test(text)),
  );
}

beforeAll(async () => {
  // The first delivery attempt gets a 500 (a retry), the rest 200.
  receiver = await startReceiver({ respond: (_w, nth) => ({ status: nth === 0 ? 500 : 200 }) });
  // In this process only the maintenance queue (relay, schedulers), as part of `npm start` would;
  // the worker process takes every job of the traffic below.
  ctx = await createTestContext({
    workers: ['maintenance'],
    env: {
      WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
      WEBHOOK_RETRY_SCHEDULE: '100ms',
      WEBHOOK_RELAY_INTERVAL_MS: '100',
    },
  });
  const web = await ctx.spawnWeb();
  children.push(web.child);
  const worker = ctx.spawnWorker(['--queues', 'products,inventory,webhooks'], { METRICS_PORT: '0' });
  children.push(worker);
  const line = await waitForOutput(worker, /worker metrics listening/);
  workerUrl = JSON.parse(line).url as string;

  const admin = { authorization: `Bearer ${ctx.adminKey}` };
  const pms = { authorization: `Bearer ${ctx.pmsKey}`, 'content-type': 'application/json' };
  const send = (url: string, init: RequestInit = {}) =>
    fetch(`${web.url}${url}`, { ...init, headers: { ...pms, ...init.headers } }).then(async (r) => ({
      status: r.status,
      body: JSON.parse(await r.text()),
    }));
  const endpoint = await send('/api/webhooks/endpoints', {
    method: 'POST',
    headers: admin,
    body: JSON.stringify({ url: receiver.url, eventTypes: ['product.*'] }),
  });
  expect(endpoint.status).toBe(201);
  receiver.secrets.push(endpoint.body.secret);
  const stream = openSse(`${web.url}/api/pms/events/stream`, { authorization: `Bearer ${ctx.pmsKey}` });
  const product = { sku: 'M-1', name: 'n', price: { amount: 1, currency: 'EUR' } };
  const wait = { prefer: 'wait=10' };
  expect(
    (await send('/api/pms/products', { method: 'POST', headers: wait, body: JSON.stringify(product) }))
      .status,
  ).toBe(201);
  expect(
    (await send('/api/pms/products', { method: 'POST', headers: wait, body: JSON.stringify(product) }))
      .status,
  ).toBe(409);
  await send('/api/pms/inventory/adjust', {
    method: 'POST',
    headers: wait,
    body: JSON.stringify({ movements: [{ sku: 'M-1', location: 'default', delta: 3, reason: 'received' }] }),
  });
  for (let i = 0; i < 3; i++) {
    await send('/api/pms/products/M-1');
    await send('/api/pms/inventory/status?sku=M-1');
  }
  await send('/api/pms/products?limit=10');
  await receiver.waitFor((r) => r.processed.size >= 1 && r.requests.length >= 2, 30_000);
  // The worker finishes the delivery after the receiver answered: wait for its counter.
  for (let i = 0; i < 100 && !/^stockflow_webhook_deliveries_total\{/m.test(texts.worker); i++) {
    texts.worker = await fetch(workerUrl).then((r) => r.text());
    await new Promise((r) => setTimeout(r, 100));
  }
  texts.web = await fetch(`${web.url}/metrics`, { headers: admin }).then((r) => r.text());
  stream.close();
  await ctx.request({ method: 'GET', url: '/api/pms/products/M-1' });
  await ctx.request({
    method: 'POST',
    url: '/api/pms/inventory/adjust',
    headers: wait,
    payload: { movements: [{ sku: 'M-1', location: 'default', delta: 1, reason: 'received' }] },
  });
  texts.single = (await ctx.request({ method: 'GET', url: '/metrics', key: ctx.adminKey })).body;
}, 90_000);

afterAll(async () => {
  for (const child of children) child.kill('SIGTERM');
  await Promise.all(children.map(exitOf));
  await receiver?.close();
  await ctx?.close();
});

describe('metrics', () => {
  it('a web process exports HTTP, queue, stock, stream, cache and pool families', () => {
    const families = familiesWithSamples(texts.web);
    expect([...webFamilies, ...everyProcess].filter((f) => !families.has(f))).toEqual([]);
    expect(texts.web).toMatch(
      /^stockflow_http_request_duration_seconds_count\{method="GET",route="\/api\/pms\/products\/:sku",status="200"\} 3$/m,
    );
    expect(texts.web).toMatch(/^stockflow_cache_hits_total\{cache="product"\} 2$/m);
  });

  it('a worker process exports job, webhook, cache and pool families on METRICS_PORT', () => {
    const families = familiesWithSamples(texts.worker);
    expect([...workerFamilies, ...everyProcess].filter((f) => !families.has(f))).toEqual([]);
    expect(texts.worker).toMatch(
      /^stockflow_jobs_failed_total\{queue="products",job="product.create",code="sku_taken"\} 1$/m,
    );
    expect(texts.worker).toMatch(/^stockflow_webhook_attempts_total\{outcome="failed"\} 1$/m);
  });

  it('one process (npm start) exports them all on the web port', () => {
    const families = familiesWithSamples(texts.single);
    const expected = [
      ...webFamilies,
      ...everyProcess,
      'stockflow_jobs_completed_total',
      'stockflow_job_duration_seconds',
    ];
    expect(expected.filter((f) => !families.has(f))).toEqual([]);
  });

  it.skipIf(skipPromtool)('passes promtool check metrics on every process type', () => {
    for (const [name, text] of Object.entries(texts)) {
      const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect({ name, status: check.status, problems: `${check.stdout}${check.stderr}`.trim() }).toEqual({
        name,
        status: 0,
        problems: '',
      });
    }
  });

  it.skipIf(skipPromtool)('the alert rules pass promtool check rules and their unit tests', () => {
    const dir = path.join(repoRoot, 'deploy/prometheus');
    const check = spawnSync('promtool', ['check', 'rules', 'alerts.yml'], { cwd: dir, encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    const test = spawnSync('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: dir, encoding: 'utf8' });
    expect(test.status, test.stdout + test.stderr).toBe(0);
    // Every rule of alerts.yml has a test case.
    const rules = [...readFileSync(path.join(dir, 'alerts.yml'), 'utf8').matchAll(/- alert: (\S+)/g)].map(
      (m) => m[1],
    );
    const tested = new Set(
      [...readFileSync(path.join(dir, 'alerts.test.yml'), 'utf8').matchAll(/alertname: (\S+)/g)].map(
        (m) => m[1],
      ),
    );
    expect(rules.filter((r) => !tested.has(r))).toEqual([]);
  });

  it('every panel of the Grafana dashboard queries metrics that exist', () => {
    const dashboard = JSON.parse(readFileSync(path.join(repoRoot, 'deploy/grafana/stockflow.json'), 'utf8'));
    expect(dashboard).toMatchObject({
      title: 'Stockflow',
      uid: 'stockflow',
      schemaVersion: expect.any(Number),
    });
    const panels = dashboard.panels.flatMap((p: { panels?: unknown[] }) => [p, ...(p.panels ?? [])]);
    const ids = panels.map((p: { id: number }) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const queried = panels.filter((p: { type: string }) => p.type !== 'row');
    expect(queried.length).toBeGreaterThan(10);
    const exported = new Set([
      ...familiesWithSamples(texts.web),
      ...familiesWithSamples(texts.worker),
      ...[...`${texts.web}\n${texts.worker}`.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]!),
    ]);
    const missing: string[] = [];
    for (const panel of queried) {
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets) {
        const names = [...target.expr.matchAll(/\bstockflow_[a-z0-9_]+/g)].map((m: RegExpMatchArray) => m[0]);
        expect(names.length, target.expr).toBeGreaterThan(0);
        for (const name of names) {
          const family = name.replace(/_(bucket|sum|count)$/, '');
          if (!exported.has(family) && !exported.has(name)) missing.push(`${panel.title}: ${name}`);
        }
      }
    }
    expect(missing).toEqual([]);
    const sections = dashboard.panels
      .filter((p: { type: string }) => p.type === 'row')
      .map((p: { title: string }) => p.title);
    expect(sections).toEqual(['Queues', 'Jobs', 'HTTP', 'Cache', 'Stock and alerts']);
  });

  it('the worker listener answers only GET /metrics, on HOST', async () => {
    expect(new URL(workerUrl).hostname).toBe('127.0.0.1');
    expect((await fetch(workerUrl.replace('/metrics', '/other'))).status).toBe(404);
    expect((await fetch(workerUrl, { method: 'POST' })).status).toBe(404);
  });
});
