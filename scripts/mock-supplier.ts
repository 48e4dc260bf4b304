import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import {
  apiKeyHeader,
  idempotencyHeader,
  signatureHeader,
  timestampHeader,
  verifySignature,
} from '../src/domain/reorder-supplier-protocol.js';

/**
 * A supplier's purchase-order API, as a small real HTTP server (for tests and local runs). It
 * checks the api key and the signature of every POST, answers each Idempotency-Key once (a retry
 * of the same order gets the first answer again), and can be told to misbehave:
 *
 *   npx tsx scripts/mock-supplier.ts --port 4010 --api-key supplier-key-123 [--fail 2 --fail-status 503
 *     --retry-after 1] [--reject "out of stock"] [--status 400] [--lead-days 3]
 *
 * Behaviour can be changed while it runs: `curl -X PUT localhost:4010/control -d '{"fail":2}'`
 * (also `accept` per sku, `pad` to lengthen acceptances);
 * `GET /orders` lists what it received.
 */

export interface SupplierBehaviour {
  /** Answer the next N orders with `failStatus` (then behave). */
  fail: number;
  failStatus: number;
  /** Retry-After (seconds) on those failures. */
  retryAfter?: number;
  /** Reject every order with this reason. */
  reject?: string;
  /** Answer every order with this status and an error body (e.g. 400). */
  status?: number;
  /** The expected date is today plus this many days. */
  leadDays: number;
  /**
   * Accept this quantity instead of the ordered one, per sku; a sku not on the order is added as
   * a line (both outside the protocol when they exceed the order: for tests of protocol errors).
   */
  accept?: Record<string, number>;
  /** Add a `note` of this many characters to every acceptance (an answer longer than it needs to be). */
  pad?: number;
}

export interface ReceivedOrder {
  at: number;
  idempotencyKey: string;
  signatureValid: boolean;
  apiKeyValid: boolean;
  status: number;
  body: unknown;
  headers: Record<string, string>;
}

export interface MockSupplier {
  url: string;
  behaviour: SupplierBehaviour;
  received: ReceivedOrder[];
  close(): Promise<void>;
}

const defaults: SupplierBehaviour = { fail: 0, failStatus: 503, leadDays: 3 };

export async function startMockSupplier(options: {
  apiKey: string;
  port?: number;
  host?: string;
  behaviour?: Partial<SupplierBehaviour>;
}): Promise<MockSupplier> {
  const answered = new Map<string, { status: number; body: string }>();
  let references = 0;
  const supplier: MockSupplier = {
    url: '',
    behaviour: { ...defaults, ...options.behaviour },
    received: [],
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };

  const answer = (order: {
    purchaseOrder?: { number?: string; lines?: { sku: string; quantity: number }[] };
  }) => {
    const b = supplier.behaviour;
    if (b.status)
      return { status: b.status, body: JSON.stringify({ error: `answered ${b.status} as told` }) };
    if (b.fail > 0) {
      b.fail -= 1;
      return {
        status: b.failStatus,
        body: JSON.stringify({ error: 'temporarily unavailable' }),
        retryAfter: b.retryAfter,
      };
    }
    if (b.reject) return { status: 200, body: JSON.stringify({ status: 'rejected', reason: b.reject }) };
    references += 1;
    const expected = new Date(Date.now() + b.leadDays * 86_400_000).toISOString().slice(0, 10);
    const ordered = order.purchaseOrder?.lines ?? [];
    const lines = [
      ...ordered.map((l) => ({ sku: l.sku, quantity: b.accept?.[l.sku] ?? l.quantity })),
      ...Object.entries(b.accept ?? {})
        .filter(([sku]) => !ordered.some((l) => l.sku === sku))
        .map(([sku, quantity]) => ({ sku, quantity })),
    ];
    return {
      status: 200,
      body: JSON.stringify({
        status: 'accepted',
        reference: `SUP-${String(references).padStart(4, '0')}`,
        expectedDate: expected,
        lines,
        ...(b.pad ? { note: 'x'.repeat(b.pad) } : {}),
      }),
    };
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const send = (status: number, body: string, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(body);
      };
      if (req.url === '/control' && req.method === 'PUT') {
        try {
          supplier.behaviour = { ...supplier.behaviour, ...JSON.parse(raw || '{}') };
          return send(200, JSON.stringify(supplier.behaviour));
        } catch {
          return send(400, JSON.stringify({ error: 'control body must be JSON' }));
        }
      }
      if (req.url === '/orders' && req.method === 'GET') return send(200, JSON.stringify(supplier.received));
      if (req.method !== 'POST') return send(405, JSON.stringify({ error: 'POST a purchase order' }));

      const header = (name: string) => {
        const value = req.headers[name];
        return Array.isArray(value) ? value[0] : value;
      };
      const apiKeyValid = header(apiKeyHeader) === options.apiKey;
      const signatureValid = verifySignature({
        apiKey: options.apiKey,
        timestamp: header(timestampHeader),
        signature: header(signatureHeader),
        body: raw,
      });
      const idempotencyKey = header(idempotencyHeader) ?? '';
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
      }
      const record: ReceivedOrder = {
        at: Date.now(),
        idempotencyKey,
        signatureValid,
        apiKeyValid,
        status: 0,
        body,
        headers: Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)])),
      };
      supplier.received.push(record);
      if (!apiKeyValid || !signatureValid) {
        record.status = 401;
        return send(401, JSON.stringify({ error: apiKeyValid ? 'bad signature' : 'unknown api key' }));
      }
      const previous = answered.get(idempotencyKey);
      if (previous) {
        record.status = previous.status;
        return send(previous.status, previous.body, { 'idempotent-replayed': 'true' });
      }
      const result = answer(body as Parameters<typeof answer>[0]);
      record.status = result.status;
      if (result.status >= 200 && result.status < 300 && idempotencyKey) answered.set(idempotencyKey, result);
      return send(
        result.status,
        result.body,
        'retryAfter' in result && result.retryAfter !== undefined
          ? { 'retry-after': String(result.retryAfter) }
          : {},
      );
    });
  });
  await new Promise<void>((resolve) =>
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve),
  );
  const address = server.address() as AddressInfo;
  supplier.url = `http://${options.host ?? '127.0.0.1'}:${address.port}/purchase-orders`;
  return supplier;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '4010' },
      host: { type: 'string', default: '127.0.0.1' },
      'api-key': { type: 'string' },
      fail: { type: 'string', default: '0' },
      'fail-status': { type: 'string', default: '503' },
      'retry-after': { type: 'string' },
      reject: { type: 'string' },
      status: { type: 'string' },
      'lead-days': { type: 'string', default: '3' },
    },
  });
  if (!values['api-key']) {
    console.error(
      'usage: mock-supplier --api-key <key> [--port 4010] [--fail N --fail-status 503 --retry-after S] [--reject reason] [--status 400]',
    );
    process.exit(2);
  }
  const supplier = await startMockSupplier({
    apiKey: values['api-key'],
    port: Number(values.port),
    host: values.host,
    behaviour: {
      fail: Number(values.fail),
      failStatus: Number(values['fail-status']),
      retryAfter: values['retry-after'] ? Number(values['retry-after']) : undefined,
      reject: values.reject,
      status: values.status ? Number(values.status) : undefined,
      leadDays: Number(values['lead-days']),
    },
  });
  console.log(
    `mock supplier listening: ${supplier.url} (PUT /control to change behaviour, GET /orders to list)`,
  );
  const stop = () => void supplier.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
