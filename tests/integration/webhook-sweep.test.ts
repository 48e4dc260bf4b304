import { afterAll, beforeAll, expect, it } from 'vitest';
import { json, type TestContext } from '../helpers/context.js';
import { type HeldRequest, startWebhookTest, type WebhookTest } from '../helpers/held-receiver.js';
import { until } from '../helpers/until.js';

/**
 * Deliveries that outlive their jobs, and attempts that race: a manual retry against an automatic
 * attempt, a delivery whose job Redis lost, a delivery whose job is alive and only waiting.
 */

let t: WebhookTest;
let ctx: TestContext;
let hooks: HeldRequest[];
/** What each path answers; `hold` keeps the request open until the test answers it. */
const behaviour = new Map<string, (nth: number) => number | 'hold'>();

beforeAll(async () => {
  t = await startWebhookTest({
    respond: (hook, earlier) =>
      behaviour.get(hook.path)?.(earlier.filter((h) => h.path === hook.path).length) ?? 200,
    // A 503 asks for the next attempt in a minute: its job then waits, delayed (alive).
    headers: (status): Record<string, string> => (status === 503 ? { 'retry-after': '60' } : {}),
    workers: ['products', 'maintenance', 'webhooks'],
    env: {
      // Two attempts, 100 ms apart; an attempt takes at most 1 s, so the sweep waits 1.5 s.
      WEBHOOK_RETRY_SCHEDULE: '100ms',
      WEBHOOK_RETRY_JITTER: '0',
      WEBHOOK_TIMEOUT_MS: '1000',
      WEBHOOK_SWEEP_INTERVAL_MS: '200',
      WEBHOOK_SWEEP_AFTER_MS: '1500',
    },
  });
  ({ ctx } = t);
  hooks = t.receiver.requests;
});
afterAll(async () => {
  await t?.close();
});

const delivery = (endpointId: string, eventId: string) =>
  ctx.api.db('webhook_deliveries').where({ endpoint_id: endpointId, event_id: eventId }).first();

it('a manual retry racing the last automatic attempt can never turn delivered into failed', async () => {
  // Automatic attempt 1 fails, attempt 2 (the last) hangs; the manual retry's attempt succeeds.
  behaviour.set('/race', (nth) => (nth === 0 ? 500 : nth === 1 ? 'hold' : 200));
  const endpointId = await t.endpointFor('/race', ['product.*']);
  const eventId = await t.createProduct('RACE-1');
  const [, held] = await until(
    'two automatic attempts',
    () => hooks.filter((h) => h.path === '/race'),
    (list) => list.length === 2,
  );
  const row = await delivery(endpointId, eventId);
  const automaticJob = row.job_id as string;

  const retry = await ctx.request({
    method: 'POST',
    url: `/api/webhooks/deliveries/${row.id}/retry`,
    key: ctx.adminKey,
  });
  expect(retry.statusCode).toBe(202);
  expect((await ctx.waitForJob(json(retry).id)).result).toMatchObject({ outcome: 'delivered' });
  expect(await delivery(endpointId, eventId)).toMatchObject({ status: 'delivered' });

  // Now the automatic attempt ends: its failure is logged, the delivery stays delivered.
  held!.answer(500);
  const automatic = await ctx.waitForJob(automaticJob);
  expect(automatic).toMatchObject({ state: 'completed', result: { outcome: 'already_delivered' } });
  const after = await delivery(endpointId, eventId);
  expect(after).toMatchObject({ status: 'delivered', attempts: 3, delivered_at: expect.any(Date) });
  const outcomes = await ctx.api
    .db('webhook_attempts')
    .where({ delivery_id: row.id })
    .orderBy('id')
    .pluck('outcome');
  expect(outcomes).toEqual(['failed', 'delivered', 'failed']);
  expect(await ctx.api.db('events').where({ type: 'webhook.delivery_exhausted' })).toHaveLength(0);
  const endpoint = await ctx.api.db('webhook_endpoints').where({ id: endpointId }).first();
  expect(endpoint.consecutive_failures).toBe(0);

  // A retry of a delivered delivery sends again, and it stays delivered whatever that attempt does.
  behaviour.set('/race', () => 500);
  const again = await ctx.request({
    method: 'POST',
    url: `/api/webhooks/deliveries/${row.id}/retry`,
    key: ctx.adminKey,
  });
  await ctx.waitForJob(json(again).id);
  expect(await delivery(endpointId, eventId)).toMatchObject({ status: 'delivered' });
  await ctx.api.db('webhook_endpoints').where({ id: endpointId }).delete();
});

it('re-enqueues a pending delivery whose job was lost, once, and leaves live jobs alone', async () => {
  behaviour.set('/lost', () => 200);
  behaviour.set('/waiting', () => 503);
  const lostEndpoint = await t.endpointFor('/lost', ['product.*']);
  const waitingEndpoint = await t.endpointFor('/waiting', ['product.*']);

  // The job is removed from Redis before any worker can take it: a delivery left pending.
  await ctx.api.queues.webhooks.pause();
  const eventId = await t.createProduct('LOST-1');
  const lost = await until(
    'the delivery row',
    () => delivery(lostEndpoint, eventId),
    (row) => row?.job_id != null,
  );
  expect(lost.status).toBe('pending');
  await until(
    'its job',
    () => ctx.api.queues.webhooks.getJob(lost.job_id),
    (job) => job !== undefined,
  );
  await ctx.api.queues.webhooks.remove(lost.job_id);
  await ctx.api.queues.webhooks.resume();

  const swept = await until(
    'the swept delivery delivered',
    () => delivery(lostEndpoint, eventId),
    (row) => row.status === 'delivered',
  );
  expect(swept).toMatchObject({ status: 'delivered', attempts: 1, enqueue_count: 1 });
  expect(swept.job_id).not.toBe(lost.job_id);

  // The failing endpoint's job is delayed (alive): after several sweeps it was not enqueued again.
  const waiting = await until(
    'the first attempt of the waiting delivery',
    () => delivery(waitingEndpoint, eventId),
    (row) => row?.attempts === 1,
  );
  await ctx.api.db('webhook_deliveries').where({ id: waiting.id }).update({ attempt_started_at: null });
  await new Promise((r) => setTimeout(r, 1000));
  expect(hooks.filter((h) => h.path === '/lost')).toHaveLength(1);
  expect(await delivery(waitingEndpoint, eventId)).toMatchObject({
    enqueue_count: 0,
    job_id: waiting.job_id,
  });
});
