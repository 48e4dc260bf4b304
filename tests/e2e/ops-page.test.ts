import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { compactAllPending } from '../../src/reports/rollups.js';
import { createProducts, createTestContext, repoRoot, type TestContext } from '../helpers/context.js';
import { plantMovements } from '../helpers/ledger-plant.js';

/** Where the page's screenshot is kept (ignored by git, beside the other test output). */
const outputDir = path.join(repoRoot, 'test-output');

let ctx: TestContext;
let browser: Browser;
let baseUrl: string;

beforeAll(async () => {
  ctx = await createTestContext({ workers: ['products', 'inventory'] });
  baseUrl = await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  await createProducts(ctx, ['OPS-1', 'OPS-2']);
  for (const movements of [
    [
      { sku: 'OPS-1', location: 'default', delta: 40, reason: 'received', unitCost: 250 },
      { sku: 'OPS-2', location: 'default', delta: 6, reason: 'received', unitCost: 900 },
    ],
    [{ sku: 'OPS-1', location: 'default', delta: -3, reason: 'damaged' }],
  ]) {
    const res = await ctx.request({
      method: 'POST',
      url: '/api/pms/inventory/adjust',
      headers: { prefer: 'wait=10' },
      payload: { movements },
    });
    expect(res.statusCode, res.body).toBe(200);
  }
  // A sale (orders write them through reservations; planted here as the ledger row it is).
  await plantMovements(ctx.api.db, [
    { sku: 'OPS-2', location: 'default', kind: 'sale', delta: -2, createdAt: new Date() },
  ]);
  await compactAllPending(ctx.api.db);
  // A webhook endpoint with a delivered and a failed delivery.
  await ctx.api.db.raw(
    `with e as (insert into webhook_endpoints (url, event_types, secret) values ('https://example.com/hook', '{stock.moved}', 'unused') returning id),
          ev as (select id, seq, type from events order by seq limit 2)
     insert into webhook_deliveries (endpoint_id, event_id, event_seq, event_type, status, attempts)
     select e.id, ev.id, ev.seq, ev.type, case when ev.seq % 2 = 0 then 'delivered' else 'failed' end, 1 from e, ev`,
  );
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
});
afterAll(async () => {
  await browser?.close();
  await ctx?.close();
});

it('needs an admin key, with a Basic challenge a browser can answer', async () => {
  const anonymous = await fetch(`${baseUrl}/ops`);
  expect(anonymous.status).toBe(401);
  expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic /);
  const pms = await fetch(`${baseUrl}/ops`, { headers: { authorization: `Bearer ${ctx.pmsKey}` } });
  expect(pms.status).toBe(403);
  const asset = await fetch(`${baseUrl}/ops/assets/ops.js`);
  expect(asset.status).toBe(401);
});

it('is readable without JavaScript: tables first, every number a link to its rows', async () => {
  const context = await browser.newContext({
    javaScriptEnabled: false,
    httpCredentials: { username: 'operator', password: ctx.adminKey },
  });
  try {
    const page = await context.newPage();
    const response = await page.goto(`${baseUrl}/ops`);
    expect(response?.status()).toBe(200);
    const csp = response?.headers()['content-security-policy'] ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    for (const id of ['stock-value', 'movements', 'top-sellers', 'low-stock', 'queues', 'webhooks']) {
      expect(await page.locator(`table#${id} tbody tr`).count(), id).toBeGreaterThan(0);
    }
    // Today's value: 37 × 250 + 4 × 900, linked to the valuation as of the day's end.
    const value = page.locator('table#stock-value tbody tr').last().locator('a');
    expect(await value.textContent()).toBe(String(37 * 250 + 4 * 900));
    expect(await value.getAttribute('href')).toMatch(/^\/api\/pms\/reports\/stock-valuation\?at=/);
    // Every number (any cell but the first of a row) is a link.
    const bare = await page.$$eval('tbody tr td:not(:first-child)', (cells) =>
      cells
        .filter((td) => /^[-\d]/.test(td.textContent?.trim() ?? '') && !td.querySelector('a'))
        .map((td) => td.textContent),
    );
    expect(bare).toEqual([]);
    const seller = page.locator('table#top-sellers a').first();
    expect(await seller.getAttribute('href')).toMatch(/^\/api\/pms\/reports\/sell-through\?/);
  } finally {
    await context.close();
  }
});

it('draws each chart with data from the platform alone, under its CSP, and keeps a screenshot', async () => {
  const context = await browser.newContext({
    httpCredentials: { username: 'operator', password: ctx.adminKey },
    viewport: { width: 1100, height: 900 },
  });
  const requested: string[] = [];
  const problems: string[] = [];
  try {
    const page = await context.newPage();
    page.on('request', (request) => requested.push(request.url()));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(message.text());
    });
    page.on('pageerror', (error) => problems.push(String(error)));
    await page.goto(`${baseUrl}/ops`);
    for (const chart of ['value', 'movements', 'jobs', 'webhooks']) {
      const el = page.locator(`.chart[data-chart="${chart}"]`);
      await el.locator('canvas').waitFor({ timeout: 15_000 });
      expect(await el.getAttribute('data-rendered'), chart).toBe('true');
      expect(Number(await el.getAttribute('data-points')), chart).toBeGreaterThan(0);
    }
    mkdirSync(outputDir, { recursive: true });
    await page.screenshot({ path: path.join(outputDir, 'ops-page.png'), fullPage: true });
  } finally {
    await context.close();
  }
  expect(problems).toEqual([]);
  expect(requested.filter((url) => new URL(url).hostname !== '127.0.0.1')).toEqual([]);
  expect(requested.some((url) => url.endsWith('/ops/assets/uPlot.iife.min.js'))).toBe(true);
});
