import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readResults } from '../../scripts/bench/results.js';
import { renderHtml } from '../../scripts/bench/results-page.js';
import { repoRoot } from '../helpers/context.js';

let browser: Browser;
const dir = mkdtempSync(path.join(tmpdir(), 'bench-report-'));

beforeAll(async () => {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
});
afterAll(async () => {
  await browser?.close();
  rmSync(dir, { recursive: true, force: true });
});

it('draws every chart from the file alone, with every request off the file refused', async () => {
  const file = path.join(dir, 'results.html');
  writeFileSync(file, renderHtml(readResults(path.join(repoRoot, 'tests/fixtures/bench'))));
  const context = await browser.newContext();
  const elsewhere: string[] = [];
  await context.route(/^(?!file:)/, (route) => {
    elsewhere.push(route.request().url());
    return route.abort();
  });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  await page.goto(`file://${file}`);
  const charts = page.locator('.chart');
  expect(await charts.count()).toBe(11);
  // uPlot draws synchronously at load; each container is marked once its chart exists.
  await expect.poll(() => page.locator('.chart[data-rendered="true"] canvas').count()).toBe(11);
  expect(await page.locator('#faults-timeline .u-legend').textContent()).toContain('failed exchanges');
  expect(errors).toEqual([]);
  expect(elsewhere).toEqual([]);
  await context.close();
});
