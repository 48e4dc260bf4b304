import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestContext, type TestContext } from '../helpers/context.js';

let ctx: TestContext;
let browser: Browser;
let baseUrl: string;

beforeAll(async () => {
  ctx = await createTestContext();
  baseUrl = await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
});
afterAll(async () => {
  await browser?.close();
  await ctx.close();
});

it('refuses Bull Board without an admin key, with a Basic challenge a browser can answer', async () => {
  const anonymous = await fetch(`${baseUrl}/admin/queues`);
  expect(anonymous.status).toBe(401);
  expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic /);
  expect(anonymous.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  const pms = await fetch(`${baseUrl}/admin/queues`, { headers: { authorization: `Bearer ${ctx.pmsKey}` } });
  expect(pms.status).toBe(403);
  const api = await fetch(`${baseUrl}/admin/queues/api/queues`, {
    headers: { authorization: `Basic ${Buffer.from(`ops:${ctx.pmsKey}`).toString('base64')}` },
  });
  expect(api.status).toBe(403);
});

it('renders Bull Board in headless Chromium for an admin key, naming every queue', async () => {
  const context = await browser.newContext({
    httpCredentials: { username: 'operator', password: ctx.adminKey },
  });
  try {
    const page = await context.newPage();
    const response = await page.goto(`${baseUrl}/admin/queues`);
    expect(response?.status()).toBe(200);
    for (const queue of Object.keys(ctx.api.queues)) {
      await page
        .getByRole('link', { name: new RegExp(`^${queue}`) })
        .first()
        .waitFor({ timeout: 15_000 });
    }
    expect(await page.title()).toContain('Stockflow');
  } finally {
    await context.close();
  }
});
