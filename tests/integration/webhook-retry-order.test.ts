import { afterAll, beforeAll, expect, it } from 'vitest';
import { appendEvents } from '../../src/events/outbox.js';
import { json, type TestContext } from '../helpers/context.js';
import { type HeldRequest, startWebhookTest, type WebhookTest } from '../helpers/held-receiver.js';
import { until } from '../helpers/until.js';

/**
 * A retry is due when its schedule says, not when the line of fresh deliveries has drained: fresh
 * deliveries wait as BullMQ-prioritized jobs, a delivery that comes back (its retry) at priority 0,
 * which BullMQ takes first (src/queues/webhooks.ts, `deliveryPriority`).
 */

const backlog = 200;
let t: WebhookTest;
let ctx: TestContext;
/** Every request, in the order the receiver got them. */
let receipts: HeldRequest[];

beforeAll(async () => {
  // The webhooks worker starts once the backlog is queued.
  t = await startWebhookTest({
    // The flaky endpoint fails each event's first attempt.
    respond: (receipt, earlier) =>
      receipt.path === '/flaky' && !earlier.some((r) => r.eventId === receipt.eventId) ? 500 : 200,
    // A slow receiver: every answer after 50 ms, so two workers drain the backlog in 5 s at best.
    delayMs: 50,
    workers: ['inventory', 'maintenance'],
    env: {
      WEBHOOK_RETRY_SCHEDULE: '1s',
      WEBHOOK_RETRY_JITTER: '0',
      WORKER_CONCURRENCY_WEBHOOKS: '2',
    },
  });
  ({ ctx } = t);
  receipts = t.receiver.requests;
});
afterAll(async () => {
  await t?.close();
});

it("runs a delivery's retry when it is due, ahead of a backlog of fresh deliveries", async () => {
  await t.endpointFor('/flaky', ['location.created']);
  await t.endpointFor('/slow', ['location.updated']);
  // The flaky delivery's event first, then the backlog's: the relay queues them in this order.
  const created = await ctx.request({
    method: 'POST',
    url: '/api/pms/locations',
    headers: { prefer: 'wait=10' },
    payload: { code: 'flaky', name: 'Flaky', priority: 10 },
  });
  expect(created.statusCode, created.body).toBe(201);
  const location = json(created);
  const flaky = await ctx.api.db('events').where({ type: 'location.created', aggregate_id: 'flaky' }).first();
  await ctx.api.db.transaction((trx) =>
    appendEvents(
      trx,
      Array.from({ length: backlog }, () => ({
        type: 'location.updated',
        aggregate: { type: 'location', id: 'flaky' },
        data: { location },
      })),
    ),
  );
  await until(
    'every delivery queued',
    () => ctx.api.queues.webhooks.getJobCounts('wait', 'prioritized'),
    (counts) => (counts.wait ?? 0) + (counts.prioritized ?? 0) === backlog + 1,
  );

  await ctx.startWorkers(['webhooks']);
  await until(
    'the backlog drained and the flaky event delivered',
    () => receipts.filter((r) => r.status === 200).length,
    (delivered) => delivered === backlog + 1,
    120_000,
  );
  const flakyAttempts = receipts.flatMap((r, i) => (r.eventId === flaky.id ? [i] : []));
  const fresh = receipts.flatMap((r, i) => (r.path === '/slow' ? [i] : []));
  expect(fresh).toHaveLength(backlog);
  // Its first attempt was among the first two (queued first, two workers), and failed.
  expect(flakyAttempts).toHaveLength(2);
  expect(flakyAttempts[0]).toBeLessThan(2);
  expect(receipts[flakyAttempts[0]!]!.status).toBe(500);
  // Its retry, due 1 s later, came before the last of the backlog: not behind all of it.
  expect(flakyAttempts[1]!).toBeLessThan(fresh.at(-1)!);
  // And well before: at least a quarter of the backlog was still to go (it takes 5 s at best).
  expect(fresh.filter((i) => i > flakyAttempts[1]!).length).toBeGreaterThan(backlog / 4);
});
