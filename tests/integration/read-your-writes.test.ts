import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, exitOf, json, type TestContext } from '../helpers/context.js';

/**
 * Readers hammer one sku on two web processes (each with its own in-process cache tier) while
 * 1,000 product updates and stock adjustments complete through workers: after each completion,
 * every read issued afterwards, on either process, shows at least that version.
 */
let ctx: TestContext;
const webs: string[] = [];
const children: ChildProcess[] = [];
beforeAll(async () => {
  // No rate limit: six readers in a loop send more than a key's default budget on a fast machine.
  ctx = await createTestContext({ workers: ['products', 'inventory'], env: { RATE_LIMIT_PER_SECOND: '0' } });
  // One after the other: two processes compiling at once on a loaded machine start slowly.
  for (let i = 0; i < 2; i++) {
    const web = await ctx.spawnWeb();
    webs.push(web.url);
    children.push(web.child);
  }
}, 90_000);
afterAll(async () => {
  for (const child of children) child.kill('SIGTERM');
  await Promise.all(children.map(exitOf));
  await ctx.close();
});

const sku = 'RYW-HOT';
const updates = 500;
const adjusts = 500;

describe('read-your-writes across web processes', () => {
  it('no read after a completion shows older data than that completion', async () => {
    const auth = { authorization: `Bearer ${ctx.pmsKey}` };
    const call = async (base: string, path: string, init: RequestInit = {}) => {
      const res = await fetch(`${base}${path}`, {
        ...init,
        headers: { ...auth, 'content-type': 'application/json', ...init.headers },
      });
      return { status: res.status, body: JSON.parse(await res.text()) };
    };
    const created = await call(webs[0]!, '/api/pms/products', {
      method: 'POST',
      headers: { prefer: 'wait=10' },
      body: JSON.stringify({ sku, name: 'v1', price: { amount: 100, currency: 'EUR' } }),
    });
    expect(created.status).toBe(201);

    // What the writers have seen completed so far: a read issued after this must show at least it.
    const floor = { version: 1, onHand: 0 };
    const violations: string[] = [];
    let reads = 0;
    let writing = true;

    const waitFor = async (res: { status: number; body: { id: string } }) => {
      if (res.status === 200) return res.body;
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      for (;;) {
        const job = await call(webs[0]!, `/api/jobs/${res.body.id}`);
        expect(job.status, JSON.stringify(job.body)).toBe(200);
        if (job.body.state === 'completed') return job.body.result;
        if (job.body.state === 'failed') throw new Error(`job failed: ${JSON.stringify(job.body.error)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const updater = async () => {
      let version = 1;
      for (let i = 0; i < updates; i++) {
        const res = await call(webs[i % 2]!, `/api/pms/products/${sku}`, {
          method: 'PUT',
          headers: { prefer: 'wait=10', 'if-match': `"${version}"` },
          body: JSON.stringify({ name: `v${version + 1}`, price: { amount: 100, currency: 'EUR' } }),
        });
        version = (await waitFor(res)).version;
        floor.version = Math.max(floor.version, version);
      }
    };
    const adjuster = async () => {
      for (let i = 0; i < adjusts; i++) {
        const res = await call(webs[(i + 1) % 2]!, '/api/pms/inventory/adjust', {
          method: 'POST',
          headers: { prefer: 'wait=10' },
          body: JSON.stringify({ movements: [{ sku, location: 'default', delta: 1, reason: 'received' }] }),
        });
        const result = await waitFor(res);
        floor.onHand = Math.max(floor.onHand, result.movements[0].onHandAfter);
      }
    };
    const reader = async (base: string) => {
      while (writing) {
        const before = { ...floor };
        const [product, status] = await Promise.all([
          call(base, `/api/pms/products/${sku}`),
          call(base, `/api/pms/inventory/status?sku=${sku}`),
        ]);
        reads += 2;
        expect(product.status, JSON.stringify(product.body)).toBe(200);
        expect(status.status, JSON.stringify(status.body)).toBe(200);
        if (product.body.version < before.version) {
          violations.push(
            `${base}: product version ${product.body.version} after ${before.version} completed`,
          );
        }
        const onHand = status.body.items[0].totals.onHand;
        if (onHand < before.onHand)
          violations.push(`${base}: on hand ${onHand} after ${before.onHand} completed`);
      }
    };
    const readers = webs.flatMap((base) => [reader(base), reader(base), reader(base)]);
    await Promise.all([updater(), adjuster()]).finally(() => {
      writing = false;
    });
    await Promise.all(readers);

    expect(violations).toEqual([]);
    expect(floor).toEqual({ version: updates + 1, onHand: adjusts });
    expect(reads).toBeGreaterThan(1000);
    // The cache was in play on both processes: most reads were served from it.
    for (const base of webs) {
      const cache = await call(base, '/api/ops/cache', {
        headers: { authorization: `Bearer ${ctx.adminKey}` },
      });
      expect(cache.body.caches.product.hits).toBeGreaterThan(0);
      expect(cache.body.caches.stock.hits).toBeGreaterThan(0);
    }
    const final = json(await ctx.request({ method: 'GET', url: `/api/pms/products/${sku}` }));
    expect(final.version).toBe(updates + 1);
  }, 240_000);
});
