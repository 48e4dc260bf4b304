import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestContext, json, type TestContext } from '../helpers/context.js';

let ctx: TestContext;
let browser: Browser;
let baseUrl: string;

beforeAll(async () => {
  ctx = await createTestContext({ workers: ['products'], env: { JOB_ATTEMPTS: '2' } });
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

const lamp = (sku: string, name = 'Lamp') => ({ sku, name, price: { amount: 4500, currency: 'EUR' } });

/** One job that breaks a domain rule (sku_taken) and one that crashes (a constraint the domain does not know). */
async function failTwoJobs(): Promise<{ domain: string; crash: string }> {
  const post = (payload: object) =>
    ctx.request({ method: 'POST', url: '/api/pms/products', payload, headers: { prefer: 'wait=10' } });
  expect((await post(lamp('BB-1'))).statusCode).toBe(201);
  const taken = await post(lamp('BB-1'));
  expect(json(taken).code).toBe('sku_taken');
  await ctx.api.db.raw(`alter table products add constraint no_crash check (name <> 'crash') not valid`);
  try {
    const crashed = json(await post(lamp('BB-2', 'crash')));
    const status = await ctx.waitForJob(crashed.jobId ?? crashed.id);
    expect(status.state).toBe('failed');
    return { domain: json(taken).jobId, crash: status.id };
  } finally {
    await ctx.api.db.raw('alter table products drop constraint no_crash');
  }
}

it('shows a domain failure as its code, message and details without a stack trace; a crash keeps its stack', async () => {
  const { domain, crash } = await failTwoJobs();
  const stored = await ctx.api.queues.products.getJob(domain);
  expect(stored?.failedReason).toMatch(/^sku_taken: .*BB-1.* \{"sku":"BB-1"\}$/);
  expect(stored?.stacktrace).toEqual([]);
  const crashed = await ctx.api.queues.products.getJob(crash);
  expect(crashed?.stacktrace?.length).toBe(2);
  expect(crashed?.stacktrace?.[0]).toMatch(/\n\s+at /);

  // What Bull Board itself serves for the failed jobs of the queue.
  const response = await fetch(
    `${baseUrl}/admin/queues/api/queues?activeQueue=products&status=failed&page=1`,
    {
      headers: { authorization: `Bearer ${ctx.adminKey}` },
    },
  );
  expect(response.status).toBe(200);
  const board = (await response.json()) as {
    queues: { name: string; jobs: { id: string; failedReason: string; stacktrace: string[] }[] }[];
  };
  const jobs = board.queues.find((q) => q.name === 'products')!.jobs;
  expect(jobs.find((j) => j.id === domain)).toMatchObject({
    failedReason: stored?.failedReason,
    stacktrace: [],
  });
  expect(jobs.find((j) => j.id === crash)?.stacktrace.length).toBe(2);

  // And the page a person reads: the code is there, no stack frame of the domain failure.
  const context = await browser.newContext({
    httpCredentials: { username: 'operator', password: ctx.adminKey },
  });
  try {
    const page = await context.newPage();
    await page.goto(`${baseUrl}/admin/queues/queue/products?status=failed`);
    await page
      .getByText(/sku_taken: /)
      .first()
      .waitFor({ timeout: 15_000 });
  } finally {
    await context.close();
  }
});

it('loads nothing from outside the deployment', async () => {
  const context = await browser.newContext({
    httpCredentials: { username: 'operator', password: ctx.adminKey },
  });
  const requested: string[] = [];
  try {
    const page = await context.newPage();
    page.on('request', (request) => requested.push(request.url()));
    const response = await page.goto(`${baseUrl}/admin/queues`);
    expect(await response?.text()).not.toMatch(/https?:\/\/(?!127\.0\.0\.1)/);
    await page
      .getByRole('link', { name: /^products/ })
      .first()
      .waitFor({ timeout: 15_000 });
    await page.goto(`${baseUrl}/admin/queues/queue/products?status=failed`);
    await page.waitForLoadState('networkidle');
  } finally {
    await context.close();
  }
  expect(requested.length).toBeGreaterThan(3);
  expect(requested.filter((url) => new URL(url).hostname !== '127.0.0.1')).toEqual([]);
});
