import { EventSource } from 'eventsource';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freePort } from '../../scripts/bench/scratch.js';
import { productJobs } from '../../src/queues/products.js';
import { createTestContext, exitOf, type TestContext } from '../helpers/context.js';

/**
 * The SSE stream driven by the `eventsource` package (a WHATWG EventSource, not our code): live
 * events, the web process restarted on the same port, the client's own reconnect with
 * Last-Event-ID, and then exactly the events it missed, none twice.
 */

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext({
    workers: ['products'],
    env: { EVENT_STREAM_HEARTBEAT_MS: '200', EVENT_STREAM_POLL_MS: '200' },
  });
});
afterAll(() => ctx.close());

/** Creates products through the queue (the web process may be down) and waits until each job is done. */
async function createProducts(skus: string[]): Promise<void> {
  const jobs = await ctx.api.queues.products.addBulk(
    skus.map((sku) => ({
      name: productJobs.create.name,
      data: {
        payload: { sku, name: sku, price: { amount: 100, currency: 'EUR' }, status: 'draft' },
        meta: { actor: 'test' },
      },
      opts: { jobId: `products-${sku}` },
    })),
  );
  for (const job of jobs) expect((await ctx.waitForJob(job.id!)).state).toBe('completed');
}

async function until(predicate: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

it('reconnects by itself after a server restart with Last-Event-ID and gets exactly the missed events', async () => {
  const port = await freePort();
  let web = await ctx.spawnWeb({ PORT: String(port) });
  const received: { id: string; sku: string; type: string }[] = [];
  const lastEventIds: (string | undefined)[] = [];
  let opened = 0;
  const source = new EventSource(`${web.url}/api/pms/events/stream?types=product.created`, {
    fetch: (input, init) => {
      lastEventIds.push(init.headers['Last-Event-ID']);
      return fetch(input, { ...init, headers: { ...init.headers, authorization: `Bearer ${ctx.pmsKey}` } });
    },
  });
  source.onopen = () => {
    opened += 1;
  };
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    received.push({ id: message.lastEventId, sku: event.aggregate.id, type: event.type });
  };
  try {
    await until(() => opened === 1, 'the stream to open');
    await createProducts(['ES-1', 'ES-2', 'ES-3']);
    await until(() => received.length === 3, 'three live events');

    // The web process goes away (SIGTERM ends every stream); events keep being written meanwhile.
    web.child.kill('SIGTERM');
    expect(await exitOf(web.child)).toBe(0);
    await createProducts(['ES-4', 'ES-5', 'ES-6', 'ES-7']);
    web = await ctx.spawnWeb({ PORT: String(port) });

    await until(() => opened === 2, 'the client to reconnect by itself');
    await createProducts(['ES-8', 'ES-9']);
    await until(() => received.length >= 9, 'the missed and the new events');
    // Let anything duplicated arrive before counting.
    await new Promise((r) => setTimeout(r, 500));

    // Jobs run concurrently, so seq order is not creation order: compare by batch.
    const skus = received.map((r) => r.sku);
    expect(skus).toHaveLength(9);
    expect(new Set(skus.slice(0, 3))).toEqual(new Set(['ES-1', 'ES-2', 'ES-3']));
    expect(new Set(skus.slice(3, 7))).toEqual(new Set(['ES-4', 'ES-5', 'ES-6', 'ES-7']));
    expect(new Set(skus.slice(7))).toEqual(new Set(['ES-8', 'ES-9']));
    const seqs = received.map((r) => Number(r.id));
    expect(new Set(seqs).size).toBe(9);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    // The first request has no Last-Event-ID; every reconnect sends the last id it had (the
    // heartbeat's id-only frames may move it past filtered-out events, never before ES-3).
    expect(lastEventIds[0]).toBeUndefined();
    const resumedFrom = Number(lastEventIds[lastEventIds.length - 1]);
    expect(resumedFrom).toBeGreaterThanOrEqual(seqs[2]!);
    expect(resumedFrom).toBeLessThan(seqs[3]!);
  } finally {
    source.close();
    web.child.kill('SIGTERM');
    await exitOf(web.child);
  }
});
