import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pruneEvents } from '../../src/events/event-log.js';
import { appendEvent } from '../../src/events/outbox.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { givenMainImage } from '../helpers/images.js';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext({ workers: ['products'] });
});
afterAll(() => ctx.close());

const wait = { prefer: 'wait=10' };
const product = (sku: string) => ({ sku, name: `Product ${sku}`, price: { amount: 100, currency: 'EUR' } });

async function feed(query: string) {
  const res = await ctx.request({ method: 'GET', url: `/api/pms/events?${query}` });
  expect(res.statusCode, res.body).toBe(200);
  return json(res) as {
    items: { seq: number; type: string; aggregate: { id: string }; data: Record<string, unknown> }[];
    nextAfter: number;
    headSeq: number;
  };
}

/** Opens a transaction and keeps it open until `finish` is called. */
function openTransaction(
  db: Knex,
): Promise<{ trx: Knex.Transaction; finish(commit: boolean): Promise<void> }> {
  return new Promise((resolveOpen) => {
    let release!: (commit: boolean) => void;
    const decided = new Promise<boolean>((r) => {
      release = r;
    });
    const done = db.transaction(async (trx) => {
      resolveOpen({
        trx,
        async finish(commit) {
          release(commit);
          await done.catch(() => undefined);
        },
      });
      if (!(await decided)) throw new Error('rolled back on purpose');
    });
  });
}

/** A location as the catalogue's `location.*` data carries it. */
const locationData = (code: string) => ({
  location: {
    code,
    name: code,
    priority: 0,
    active: true,
    version: 1,
    createdAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
  },
});

describe('event feed', () => {
  it('pages product events in seq order with nextAfter, filters by type patterns', async () => {
    const start = (await feed('after=0')).headSeq;
    for (const sku of ['F-1', 'F-2', 'F-3']) {
      await ctx.request({ method: 'POST', url: '/api/pms/products', headers: wait, payload: product(sku) });
    }
    await givenMainImage(ctx.api.db, 'F-2'); // publishing needs a processed main image
    await ctx.request({ method: 'POST', url: '/api/pms/products/F-2/publish', headers: wait });

    const first = await feed(`after=${start}&limit=2`);
    expect(first.items.map((e) => e.aggregate.id)).toEqual(['F-1', 'F-2']);
    expect(first.nextAfter).toBe(first.items[1]!.seq);
    const second = await feed(`after=${first.nextAfter}&limit=2`);
    expect(second.items.map((e) => `${e.type}:${e.aggregate.id}`)).toEqual([
      'product.created:F-3',
      'product.published:F-2',
    ]);
    const rest = await feed(`after=${second.nextAfter}&limit=2`);
    expect(rest.items).toEqual([]);
    expect(rest.nextAfter).toBe(rest.headSeq);

    const published = await feed(`after=${start}&types=product.published`);
    expect(published.items.map((e) => e.aggregate.id)).toEqual(['F-2']);
    // Filtered pages still advance past everything scanned.
    expect(published.nextAfter).toBe(published.headSeq);
    const wildcard = await feed(`after=${start}&types=product.*,location.created`);
    expect(wildcard.items).toHaveLength(4);
    const none = await feed(`after=${start}&types=stock.*`);
    expect(none.items).toEqual([]);
    // A filter that can never match is a typo: refused, naming the closest known types.
    const unknown = await ctx.request({ method: 'GET', url: '/api/pms/events?types=shipment.*,product.*' });
    expect(unknown.statusCode).toBe(422);
    expect(json(unknown)).toMatchObject({
      code: 'unknown_event_type',
      errors: [{ in: 'querystring', path: 'types.0' }],
    });
    expect(json(unknown).suggestions.length).toBeGreaterThan(0);

    const bad = await ctx.request({ method: 'GET', url: '/api/pms/events?types=product.*.x' });
    expect(bad.statusCode).toBe(400);
    expect(json(bad).errors[0]).toMatchObject({ in: 'querystring' });
  });

  it('never skips an event when seqs commit out of order', async () => {
    const before = (await feed('after=0')).headSeq;
    const older = await openTransaction(ctx.api.db);
    const first = await appendEvent(older.trx, {
      type: 'location.created',
      aggregate: { type: 'location', id: 'a' },
      data: locationData('a'),
    });
    const newer = await openTransaction(ctx.api.db);
    const second = await appendEvent(newer.trx, {
      type: 'location.updated',
      aggregate: { type: 'location', id: 'b' },
      data: locationData('b'),
    });
    expect(second.seq).toBeGreaterThan(first.seq);
    await newer.finish(true);

    // The later seq is committed, the earlier one is still in flight: serving the later one now
    // would move a reader past the earlier one for good.
    const between = await feed(`after=${before}`);
    expect(between.items.map((e) => e.seq)).not.toContain(second.seq);
    expect(between.headSeq).toBeLessThan(first.seq);
    expect(between.nextAfter).toBeLessThan(first.seq);

    await older.finish(true);
    const after = await feed(`after=${between.nextAfter}`);
    expect(after.items.map((e) => e.seq)).toEqual([first.seq, second.seq]);
  });

  it('skips the seq of a rolled-back transaction without waiting for it forever', async () => {
    const before = (await feed('after=0')).headSeq;
    const doomed = await openTransaction(ctx.api.db);
    const lost = await appendEvent(doomed.trx, {
      type: 'location.created',
      aggregate: { type: 'location', id: 'x' },
      data: locationData('x'),
    });
    const kept = await ctx.api.db.transaction((trx) =>
      appendEvent(trx, {
        type: 'location.updated',
        aggregate: { type: 'location', id: 'y' },
        data: locationData('y'),
      }),
    );
    await doomed.finish(false);
    const page = await feed(`after=${before}`);
    expect(page.items.map((e) => e.seq)).toEqual([kept.seq]);
    expect(page.items.map((e) => e.seq)).not.toContain(lost.seq);
  });

  it('records consumer acks and reports lag against the head', async () => {
    const head = (await feed('after=0')).headSeq;
    const all = (await feed('after=0&limit=1000')).items;
    const ack = await ctx.request({
      method: 'POST',
      url: '/api/pms/sync/ack',
      payload: { consumer: 'pms-main', seq: all[1]!.seq },
    });
    expect(ack.statusCode).toBe(200);
    expect(json(ack)).toMatchObject({ consumer: 'pms-main', ackedSeq: all[1]!.seq });

    const status = json(await ctx.request({ method: 'GET', url: '/api/pms/sync/status' }));
    expect(status.headSeq).toBe(head);
    expect(status.consumers).toEqual([
      expect.objectContaining({
        consumer: 'pms-main',
        ackedSeq: all[1]!.seq,
        headSeq: head,
        lag: all.length - 2,
      }),
    ]);
    // Positions only move forward; a position past the log is refused.
    await ctx.request({
      method: 'POST',
      url: '/api/pms/sync/ack',
      payload: { consumer: 'pms-main', seq: 1 },
    });
    const future = await ctx.request({
      method: 'POST',
      url: '/api/pms/sync/ack',
      payload: { consumer: 'pms-main', seq: head + 1000 },
    });
    expect(future.statusCode).toBe(422);
    expect(json(future).code).toBe('invalid_position');
    const again = json(await ctx.request({ method: 'GET', url: '/api/pms/sync/status' }));
    expect(again.consumers[0]).toMatchObject({ ackedSeq: all[1]!.seq, lag: all.length - 2 });
  });

  it('documents the event, sync and webhook routes in the OpenAPI document', async () => {
    const res = await ctx.request({ method: 'GET', url: '/docs/json' });
    expect(res.statusCode).toBe(200);
    const paths = Object.keys(json(res).paths);
    for (const path of [
      '/api/pms/events',
      '/api/pms/events/stream',
      '/api/pms/sync/status',
      '/api/webhooks/endpoints/{id}/replay',
      '/api/webhooks/deliveries/{id}/retry',
    ]) {
      expect(paths).toContain(path);
    }
  });

  it('answers 410 with the oldest retained seq once older events are pruned', async () => {
    await ctx.api.db('outbox_cursors').update({ position: 1_000_000 });
    const fresh = await pruneEvents(ctx.api.db, { olderThanDays: 30 });
    expect(fresh).toEqual({ deleted: 0, prunedThroughSeq: 0 });
    await ctx.api.db('events').update({ occurred_at: ctx.api.db.raw(`now() - interval '40 days'`) });
    await ctx.api.db('outbox_cursors').update({ position: 1_000_000 });
    const result = await pruneEvents(ctx.api.db, { olderThanDays: 30 });
    expect(result.deleted).toBeGreaterThan(0);
    const gone = await ctx.request({ method: 'GET', url: '/api/pms/events?after=0' });
    expect(gone.statusCode).toBe(410);
    expect(json(gone)).toMatchObject({ code: 'events_pruned', oldestSeq: result.prunedThroughSeq + 1 });
    const fine = await ctx.request({
      method: 'GET',
      url: `/api/pms/events?after=${result.prunedThroughSeq}`,
    });
    expect(fine.statusCode).toBe(200);
  });
});
