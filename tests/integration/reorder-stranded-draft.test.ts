import { afterAll, beforeAll, expect, it } from 'vitest';
import { type MockSupplier, startMockSupplier } from '../../scripts/mock-supplier.js';
import { generateSecretsKey } from '../../src/secrets.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { expectIncomingMatchesLines, reorderApi, until } from '../helpers/reorder.js';

/**
 * A draft whose send job Redis lost is sent all the same: the planner's scan queues the send again
 * once the draft is overdue, and the supplier receives the order once.
 */
let ctx: TestContext;
let supplier: MockSupplier;
const apiKey = 'supplier-key-123';

beforeAll(async () => {
  ctx = await createTestContext({
    workers: true,
    env: {
      SECRETS_KEY: generateSecretsKey(),
      SUPPLIER_ALLOW_PRIVATE_TARGETS: 'true',
      REORDER_SCAN_INTERVAL_MS: '100',
      REORDER_SEND_DELAY_MS: '1500',
      REORDER_DRAFT_RESEND_AFTER_MS: '1000',
    },
  });
  supplier = await startMockSupplier({ apiKey });
});
afterAll(async () => {
  await supplier?.close();
  await expectIncomingMatchesLines(ctx);
  await ctx.close();
});

it('sends a draft whose send job was lost, once', async () => {
  const api = reorderApi(ctx);
  supplier.behaviour = { fail: 0, failStatus: 503, leadDays: 3 };
  await api.product('LOST', 1);
  await api.supplier({ code: 'lost', apiUrl: supplier.url, apiKey });
  await api.rule({ sku: 'LOST', supplier: 'lost', reorderPoint: 2, reorderQuantity: 10 });
  const order = await until(() => ctx.api.db('purchase_orders').where({ supplier_code: 'lost' }).first());
  expect(order.status).toBe('draft');

  // Redis loses the delayed send job before it is due.
  const send = await until(() => ctx.api.queues.reorder.getJob(`reorder-send-${order.id}`));
  expect(await send.getState()).toBe('delayed');
  await send.remove();

  const sent = await until(async () => {
    const row = await ctx.api.db('purchase_orders').where({ id: order.id }).first('status', 'created_at');
    return row.status === 'acknowledged' ? row : undefined;
  });
  expect(sent.status).toBe('acknowledged');
  const requests = supplier.received.filter((r) => JSON.stringify(r).includes(order.id));
  expect(requests).toHaveLength(1);
  // Queued again by a scan, not before the draft was overdue (send delay + grace after creation).
  const resent = await ctx.api.queues.reorder.getJob(`reorder-send-${order.id}`);
  expect(resent!.timestamp - new Date(sent.created_at).getTime()).toBeGreaterThanOrEqual(2500);
  expect(await api.level('LOST')).toMatchObject({ incoming: 10 });
});
