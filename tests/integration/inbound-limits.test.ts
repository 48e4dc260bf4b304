import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSecret } from '../../src/webhooks/signing.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { type RawResponse, rawRequest } from '../helpers/raw-http.js';

/**
 * What an unsigned caller can make the inbound webhook routes do, over a real socket: bodies over
 * INBOUND_BODY_LIMIT_BYTES are refused before they are read, and bad signatures are counted per
 * client address (X-Forwarded-For behind one trusted proxy) and refused with 429 past the limit.
 */

const secret = generateSecret();
const failuresPerMinute = 5;
let ctx: TestContext;
let port: number;
beforeAll(async () => {
  ctx = await createTestContext({
    env: {
      INBOUND_WEBHOOK_SECRET: secret,
      INBOUND_SIGNATURE_FAILURES_PER_MINUTE: String(failuresPerMinute),
      TRUST_PROXY_HOPS: '1',
    },
  });
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  port = (ctx.app.server.address() as AddressInfo).port;
});
afterAll(() => ctx?.close());

let seq = 0;
const event = (padding = 0) =>
  JSON.stringify({
    type: 'product.archived',
    timestamp: new Date().toISOString(),
    data: { sku: 'IN-1' },
  }).replace(/}$/, `${' '.repeat(padding)}}`);

/** Headers of a delivery of `body`, signed with `key` (default: the configured secret). */
function signed(body: string, key = secret, id = `msg_limits_${++seq}`) {
  const at = new Date();
  return {
    'content-type': 'application/json',
    'webhook-id': id,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': new Webhook(key).sign(id, at, body),
  };
}

const post = (body: string, headers: Record<string, string | null>, from = '198.51.100.1') =>
  rawRequest(port, {
    method: 'POST',
    target: '/api/pms/webhook/product',
    headers: { 'x-forwarded-for': from, ...headers },
    body,
  });

const problemOf = (res: RawResponse) => {
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  return JSON.parse(res.body) as { code: string; status: number };
};

describe('body size', () => {
  const limit = 256 * 1024;

  it('takes a signed body of exactly INBOUND_BODY_LIMIT_BYTES (default 256 KiB)', async () => {
    expect(ctx.config.INBOUND_BODY_LIMIT_BYTES).toBe(limit);
    const body = event(limit - event().length);
    expect(Buffer.byteLength(body)).toBe(limit);
    const res = await post(body, signed(body), '198.51.100.10');
    expect(res.status, res.body).toBe(202);
  });

  it('refuses one byte more with 413 payload_too_large, however well signed', async () => {
    const body = event(limit + 1 - event().length);
    const res = await post(body, signed(body), '198.51.100.11');
    expect(res.status).toBe(413);
    expect(problemOf(res)).toMatchObject({ code: 'payload_too_large' });
  });

  it('answers 413 from the Content-Length alone, before any byte of the body arrives', async () => {
    const res = await post('', { ...signed('x'), 'content-length': String(300 * 1024) }, '198.51.100.12');
    expect(res.status).toBe(413);
    expect(problemOf(res)).toMatchObject({ code: 'payload_too_large' });
  });

  it('refuses a chunked body once it passes the limit', async () => {
    const chunk = 'x'.repeat(64 * 1024);
    const chunked = `${`${chunk.length.toString(16)}\r\n${chunk}\r\n`.repeat(5)}0\r\n\r\n`;
    const res = await post(
      chunked,
      { ...signed('x'), 'content-length': null, 'transfer-encoding': 'chunked' },
      '198.51.100.13',
    );
    expect(res.status).toBe(413);
    expect(problemOf(res)).toMatchObject({ code: 'payload_too_large' });
  });
});

describe('bad signatures per client address', () => {
  it('answers at most the limit of 401s to concurrent forgeries, then 429 with Retry-After', async () => {
    const body = event();
    const forged = Array.from({ length: 20 }, () =>
      post(body, signed(body, generateSecret()), '203.0.113.7'),
    );
    const answers = await Promise.all(forged);
    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((s) => s !== 401 && s !== 429)).toEqual([]);
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(failuresPerMinute);
    const limited = answers.find((a) => a.status === 429)!;
    expect(limited).toBeDefined();
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(problemOf(limited)).toMatchObject({ status: 429, code: 'too_many_signature_failures' });
  });

  it('refuses that address before reading its body, and leaves other addresses alone', async () => {
    // Headers announcing a body that never comes: the answer cannot wait for it.
    const early = await post('', { ...signed('x'), 'content-length': '100000' }, '203.0.113.7');
    expect(early.status).toBe(429);
    expect(problemOf(early)).toMatchObject({ code: 'too_many_signature_failures' });

    const body = event();
    const good = await post(body, signed(body), '203.0.113.8');
    expect(good.status, good.body).toBe(202);
    const bad = await post(body, signed(body, generateSecret()), '203.0.113.8');
    expect(bad.status).toBe(401);
    expect(problemOf(bad)).toMatchObject({ code: 'invalid_signature' });
  });
});

describe('envelope', () => {
  it('refuses a year-0 event timestamp with 422 (nothing queued that Postgres would refuse)', async () => {
    const body = JSON.stringify({
      type: 'product.archived',
      timestamp: '0000-01-01T00:00:00Z',
      data: { sku: 'IN-1' },
    });
    const res = await post(body, signed(body), '198.51.100.20');
    expect(res.status).toBe(422);
    expect(problemOf(res)).toMatchObject({ code: 'invalid_webhook_payload' });
  });
});
