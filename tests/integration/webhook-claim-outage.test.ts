import { afterAll, beforeAll, expect, it } from 'vitest';
import { json, type TestContext } from '../helpers/context.js';
import { startWebhookTest, type WebhookTest } from '../helpers/held-receiver.js';
import { lockRow, terminateWaiting } from '../helpers/pg-blocking.js';
import { until } from '../helpers/until.js';

/**
 * Postgres away before a delivery's POST is not a failed attempt: the job comes back after
 * JOB_BACKOFF_MS, not at the retry schedule's next step (here 30 s, as in the fault suite, where a
 * Postgres restart just after a receiver's outage held two deliveries back 30 s).
 */

let t: WebhookTest;
let ctx: TestContext;

beforeAll(async () => {
  // The webhooks worker starts once the delivery is queued and its row held.
  t = await startWebhookTest({
    // Every POST answered 200 at once.
    respond: () => 200,
    workers: ['products', 'maintenance'],
    env: {
      WEBHOOK_RETRY_SCHEDULE: '30s',
      WEBHOOK_RETRY_JITTER: '0',
      // The claim waits on the test's lock for as long as the test needs, on a loaded machine too.
      DATABASE_WORKER_LOCK_TIMEOUT_MS: '0',
      DATABASE_WORKER_STATEMENT_TIMEOUT_MS: '0',
    },
  });
  ({ ctx } = t);
  await t.endpointFor('/hooks', ['product.created']);
});
afterAll(async () => {
  await t?.close();
});

it('a claim cut off by Postgres spends no attempt: the first POST follows at once and is attempt 1', async () => {
  const eventId = await t.createProduct('CLAIM-1');
  const delivery = await until(
    'the delivery queued by the relay',
    () => ctx.api.db('webhook_deliveries').where({ event_id: eventId }).first(),
    (row) => row?.job_id != null,
  );
  const lock = await lockRow(ctx.api.db, 'webhook_deliveries', delivery.id);
  await ctx.startWorkers(['webhooks']);
  // The claim marks the attempt started on the held row: it waits, and is cut off.
  await terminateWaiting(ctx.api.db, lock.pid, [], 'the claim waiting on the row');
  await lock.trx.rollback();

  // Within the 30 s a spent attempt would wait for its retry.
  const job = await ctx.waitForJob(delivery.job_id, 15_000);
  expect(job).toMatchObject({ state: 'completed', result: { outcome: 'delivered', attempt: 1 } });
  expect(t.receiver.requests.filter((r) => r.eventId === eventId)).toHaveLength(1);
  const detail = json(
    await ctx.request({ method: 'GET', url: `/api/webhooks/deliveries/${delivery.id}`, key: ctx.adminKey }),
  );
  expect(detail).toMatchObject({ status: 'delivered', attempts: 1 });
});
