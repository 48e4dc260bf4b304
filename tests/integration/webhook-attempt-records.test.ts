import { afterAll, beforeAll, expect, it } from 'vitest';
import { recordRetryDelaysMs } from '../../src/queues/backoff.js';
import { json, type TestContext } from '../helpers/context.js';
import { type HeldRequest, startWebhookTest, type WebhookTest } from '../helpers/held-receiver.js';
import { lockRow, terminateWaiting } from '../helpers/pg-blocking.js';
import { until } from '../helpers/until.js';

/**
 * Every attempt made is in the delivery's attempt log, also when the transaction that records it
 * is cut off: a receiver answers 200 while the test holds the delivery's row, so the worker's
 * record waits on it, and the test terminates that worker backend (`pg_terminate_backend`, as an
 * operator or a failover does) while it waits.
 */

let t: WebhookTest;
let ctx: TestContext;
/** Every request, held until the test answers it. */
let hooks: HeldRequest[];

beforeAll(async () => {
  t = await startWebhookTest({
    workers: ['products', 'maintenance', 'webhooks'],
    env: {
      WEBHOOK_RETRY_SCHEDULE: '100ms',
      // The record waits on the test's lock for as long as the test needs, on a loaded machine too.
      DATABASE_WORKER_LOCK_TIMEOUT_MS: '0',
      DATABASE_WORKER_STATEMENT_TIMEOUT_MS: '0',
      DATABASE_API_IDLE_IN_TRANSACTION_TIMEOUT_MS: '0',
    },
  });
  ({ ctx } = t);
  hooks = t.receiver.requests;
  await t.endpointFor('/hooks', ['product.created']);
});
afterAll(async () => {
  await t?.close();
});

/** A product's creation, and its delivery's first POST, held open at the receiver. */
async function heldDelivery(sku: string) {
  const eventId = await t.createProduct(sku);
  const hook = await until(
    'the first POST',
    () => hooks.find((h) => h.eventId === eventId),
    (h) => h !== undefined,
  );
  const delivery = await ctx.api.db('webhook_deliveries').where({ event_id: eventId }).first();
  return { eventId, hook: hook!, delivery };
}

const lockDelivery = (deliveryId: string) => lockRow(ctx.api.db, 'webhook_deliveries', deliveryId);
const terminateWaitingRecord = (lockPid: number, terminated: number[]) =>
  terminateWaiting(ctx.api.db, lockPid, terminated, "the worker's record waiting on the row");

const attemptLog = async (deliveryId: string) =>
  json(
    await ctx.request({ method: 'GET', url: `/api/webhooks/deliveries/${deliveryId}`, key: ctx.adminKey }),
  );

/** The job delivered on its first attempt; the receiver saw one POST, and the log has it. */
async function expectDeliveredOnce(eventId: string, delivery: { id: string; job_id: string }) {
  const job = await ctx.waitForJob(delivery.job_id);
  expect(job).toMatchObject({ state: 'completed', result: { outcome: 'delivered', attempt: 1 } });
  expect(hooks.filter((h) => h.eventId === eventId)).toHaveLength(1);
  const detail = await attemptLog(delivery.id);
  expect(detail).toMatchObject({ status: 'delivered', attempts: 1 });
  expect(detail.attemptLog).toEqual([
    expect.objectContaining({ attempt: 1, statusCode: 200, outcome: 'delivered' }),
  ]);
}

it('records a 2xx whose record was cut off once, by trying the record again: one POST, one attempt', async () => {
  const { eventId, hook, delivery } = await heldDelivery('REC-1');
  const lock = await lockDelivery(delivery.id);
  hook.answer(200);
  await terminateWaitingRecord(lock.pid, []);
  await lock.trx.rollback();

  await expectDeliveredOnce(eventId, delivery);
});

it('keeps a 2xx it could not record in the job, and its next run records it without a second POST', async () => {
  const { eventId, hook, delivery } = await heldDelivery('REC-2');
  const lock = await lockDelivery(delivery.id);
  hook.answer(200);
  // The record and each of its retries are cut off: the attempt is kept in the job's data.
  const terminated: number[] = [];
  for (let i = 0; i <= recordRetryDelaysMs.length; i++) await terminateWaitingRecord(lock.pid, terminated);
  const kept = await until(
    'the attempt kept in the job',
    () => ctx.api.queues.webhooks.getJob(delivery.job_id),
    (job) => job?.data.pendingAttempt !== undefined,
  );
  expect(kept!.data.pendingAttempt.attempt).toMatchObject({ statusCode: 200, outcome: 'delivered' });
  // Postgres is back: the next run records it, and finishes as delivered.
  await lock.trx.rollback();

  await expectDeliveredOnce(eventId, delivery);
  expect((await ctx.api.queues.webhooks.getJob(delivery.job_id))!.data.pendingAttempt).toBeUndefined();
});

it('records a failure it could not record before acting on it: the retry follows, both attempts in the log', async () => {
  const { eventId, hook, delivery } = await heldDelivery('REC-3');
  const lock = await lockDelivery(delivery.id);
  hook.answer(500);
  const terminated: number[] = [];
  for (let i = 0; i <= recordRetryDelaysMs.length; i++) await terminateWaitingRecord(lock.pid, terminated);
  await until(
    'the attempt kept in the job',
    () => ctx.api.queues.webhooks.getJob(delivery.job_id),
    (job) => job?.data.pendingAttempt !== undefined,
  );
  await lock.trx.rollback();

  const retry = await until(
    'the retry',
    () => hooks.filter((h) => h.eventId === eventId),
    (list) => list.length === 2,
  );
  retry[1]!.answer(200);
  const job = await ctx.waitForJob(delivery.job_id);
  expect(job).toMatchObject({ state: 'completed', result: { outcome: 'delivered', attempt: 2 } });
  const detail = await attemptLog(delivery.id);
  expect(detail).toMatchObject({ status: 'delivered', attempts: 2 });
  expect(
    detail.attemptLog.map((a: { statusCode: number; outcome: string }) => `${a.statusCode}:${a.outcome}`),
  ).toEqual(['500:failed', '200:delivered']);
});
