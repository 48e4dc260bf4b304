import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { appendEvents } from '../../src/events/outbox.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';
import { until } from '../helpers/until.js';

/**
 * A retry is due when its schedule says, not when the line of fresh deliveries has drained: fresh
 * deliveries wait as BullMQ-prioritized jobs, a delivery that comes back (its retry) at priority 0,
 * which BullMQ takes first (src/queues/webhooks.ts, `deliveryPriority`).
 */

interface Receipt {
  path: string;
  eventId: string;
  status: number;
}

const backlog = 200;
let ctx: TestContext;
let server: http.Server;
let origin: string;
/** Every request, in the order the receiver got them. */
const receipts: Receipt[] = [];

beforeAll(async () => {
  // A slow receiver: every answer after 50 ms, so two workers drain the backlog in 5 s at best.
  server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const receipt = { path: req.url ?? '', eventId: String(req.headers['webhook-id']), status: 200 };
      // The flaky endpoint fails each event's first attempt.
      if (receipt.path === '/flaky' && !receipts.some((r) => r.eventId === receipt.eventId))
        receipt.status = 500;
      receipts.push(receipt);
      setTimeout(() => res.writeHead(receipt.status).end(), 50);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // The webhooks worker starts once the backlog is queued.
  ctx = await createTestContext({
    workers: ['inventory', 'maintenance'],
    env: {
      WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
      WEBHOOK_RETRY_SCHEDULE: '1s',
      WEBHOOK_RETRY_JITTER: '0',
      WEBHOOK_RELAY_INTERVAL_MS: '100',
      WORKER_CONCURRENCY_WEBHOOKS: '2',
    },
  });
});
afterAll(async () => {
  await ctx?.close();
  server?.closeAllConnections();
  server?.close();
});

async function endpointFor(path: string, eventTypes: string[]): Promise<void> {
  const res = await ctx.request({
    method: 'POST',
    url: '/api/webhooks/endpoints',
    key: ctx.adminKey,
    payload: { url: `${origin}${path}`, eventTypes },
  });
  expect(res.statusCode, res.body).toBe(201);
}

it("runs a delivery's retry when it is due, ahead of a backlog of fresh deliveries", async () => {
  await endpointFor('/flaky', ['location.created']);
  await endpointFor('/slow', ['location.updated']);
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
