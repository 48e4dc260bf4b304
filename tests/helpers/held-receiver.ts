import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'vitest';
import { type ContextOptions, createTestContext, json, type TestContext } from './context.js';

/** One POST the receiver got. */
export interface HeldRequest {
  /** The path of the endpoint's URL (`/flaky`): one receiver serves several endpoints. */
  path: string;
  /** Its `webhook-id`: the event's id. */
  eventId: string;
  /** The status it is answered with; undefined while the test holds it. */
  status: number | undefined;
  /** Answers a held request. */
  answer(status: number): void;
}

/** What a request is answered with: a status, or `'hold'` until the test calls its `answer`. */
export type Respond = (request: HeldRequest, earlier: readonly HeldRequest[]) => number | 'hold';

export interface HeldReceiverOptions {
  /** Default: every request held. */
  respond?: Respond;
  /** How long every answer waits once decided (a slow receiver); default none. */
  delayMs?: number;
  /** Headers an answer of this status carries (a 503's Retry-After). */
  headers?: (status: number) => Record<string, string>;
}

/**
 * A webhook receiver that the test answers: a plain HTTP server on 127.0.0.1 that records every
 * request, in the order their bodies ended, and answers as `respond` says. It checks no
 * signature: the tests that use it judge when and how often deliveries POST (the signatures are
 * `webhook-receiver.ts`'s, with the `standardwebhooks` package).
 */
export interface HeldReceiver {
  /** `http://127.0.0.1:<port>` */
  origin: string;
  requests: HeldRequest[];
  close(): void;
}

export async function startHeldReceiver(options: HeldReceiverOptions = {}): Promise<HeldReceiver> {
  const requests: HeldRequest[] = [];
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const request: HeldRequest = {
        path: req.url ?? '',
        eventId: String(req.headers['webhook-id']),
        status: undefined,
        answer: (status) => {
          request.status = status;
          const send = () => res.writeHead(status, options.headers?.(status) ?? {}).end();
          if (options.delayMs) setTimeout(send, options.delayMs);
          else send();
        },
      };
      const decided = (options.respond ?? (() => 'hold'))(request, [...requests]);
      requests.push(request);
      if (decided !== 'hold') request.answer(decided);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

export interface WebhookTest {
  ctx: TestContext;
  receiver: HeldReceiver;
  /** Registers an endpoint at the receiver's `path` for these types; answers its id. */
  endpointFor(path: string, eventTypes: string[]): Promise<string>;
  /** Creates a product (waiting for its job) and answers the id of its `product.created` event. */
  createProduct(sku: string): Promise<string>;
  close(): Promise<void>;
}

/**
 * A held receiver and a test context whose webhooks may target it (a private address) and whose
 * relay looks for new events every 100 ms; `env` adds the test's own settings.
 */
export async function startWebhookTest(
  options: HeldReceiverOptions & Pick<ContextOptions, 'workers' | 'env'>,
): Promise<WebhookTest> {
  const receiver = await startHeldReceiver(options);
  const ctx = await createTestContext({
    workers: options.workers,
    env: { WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true', WEBHOOK_RELAY_INTERVAL_MS: '100', ...options.env },
  }).catch((error: unknown) => {
    receiver.close();
    throw error;
  });
  return {
    ctx,
    receiver,
    async endpointFor(path, eventTypes) {
      const res = await ctx.request({
        method: 'POST',
        url: '/api/webhooks/endpoints',
        key: ctx.adminKey,
        payload: { url: `${receiver.origin}${path}`, eventTypes },
      });
      expect(res.statusCode, res.body).toBe(201);
      return json(res).id;
    },
    async createProduct(sku) {
      const res = await ctx.request({
        method: 'POST',
        url: '/api/pms/products',
        headers: { prefer: 'wait=10' },
        payload: { sku, name: sku, price: { amount: 100, currency: 'EUR' } },
      });
      expect(res.statusCode, res.body).toBe(201);
      return (await ctx.api.db('events').where({ aggregate_id: sku, type: 'product.created' }).first()).id;
    },
    async close() {
      await ctx.close();
      receiver.close();
    },
  };
}
