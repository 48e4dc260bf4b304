import { execFile } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestContext, json, type TestContext } from '../helpers/context.js';

/**
 * A real delivery's signature checked by OpenSSL, an implementation that shares nothing with the
 * `standardwebhooks` package that signs: HMAC-SHA256 over `webhook-id.webhook-timestamp.body`
 * with the raw key bytes of the `whsec_` secret (base64 after the prefix), base64-encoded.
 */

interface RawDelivery {
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

let ctx: TestContext;
let server: http.Server;
let url: string;
const deliveries: RawDelivery[] = [];

beforeAll(async () => {
  ctx = await createTestContext({
    workers: true,
    env: { WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true', WEBHOOK_RELAY_INTERVAL_MS: '100' },
  });
  server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      deliveries.push({ headers: request.headers, body: Buffer.concat(chunks) });
      response.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await ctx.close();
});

/** `openssl dgst -sha256 -mac HMAC -macopt hexkey:<key>` of `content`, base64-encoded. */
function opensslSignature(secret: string, content: Buffer): Promise<string> {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64').toString('hex');
  return new Promise((resolve, reject) => {
    const child = execFile(
      'openssl',
      ['dgst', '-sha256', '-mac', 'HMAC', '-macopt', `hexkey:${key}`, '-binary'],
      { encoding: 'buffer' },
      (error, stdout) => (error ? reject(error) : resolve((stdout as Buffer).toString('base64'))),
    );
    child.stdin!.end(content);
  });
}

const signedContent = (d: RawDelivery, body = d.body) =>
  Buffer.concat([Buffer.from(`${d.headers['webhook-id']}.${d.headers['webhook-timestamp']}.`), body]);

async function deliveryOf(sku: string): Promise<RawDelivery> {
  const created = await ctx.request({
    method: 'POST',
    url: '/api/pms/products',
    headers: { prefer: 'wait=10' },
    payload: { sku, name: `Signed ${sku}`, price: { amount: 100, currency: 'EUR' } },
  });
  expect(created.statusCode).toBe(201);
  const deadline = Date.now() + 20_000;
  for (;;) {
    const found = deliveries.find((d) => JSON.parse(d.body.toString()).data.product.sku === sku);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no delivery for ${sku}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

it('signs a real delivery as openssl computes it, and a changed body no longer matches', async () => {
  const endpoint = json(
    await ctx.request({
      method: 'POST',
      url: '/api/webhooks/endpoints',
      key: ctx.adminKey,
      payload: { url, eventTypes: ['product.created'] },
    }),
  );
  expect(endpoint.secret).toMatch(/^whsec_/);
  const delivery = await deliveryOf('SIG-1');
  expect(delivery.headers['webhook-id']).toBe(JSON.parse(delivery.body.toString()).id);
  expect(delivery.headers['webhook-timestamp']).toMatch(/^\d{10}$/);
  const expected = await opensslSignature(endpoint.secret, signedContent(delivery));
  expect(delivery.headers['webhook-signature']).toBe(`v1,${expected}`);

  const tampered = Buffer.from(delivery.body.toString().replace('SIG-1', 'SIG-X'));
  expect(await opensslSignature(endpoint.secret, signedContent(delivery, tampered))).not.toBe(expected);

  // During a rotation both secrets sign, each signature verifiable on its own.
  const rotated = json(
    await ctx.request({
      method: 'POST',
      url: `/api/webhooks/endpoints/${endpoint.id}/rotate-secret`,
      key: ctx.adminKey,
    }),
  );
  const next = await deliveryOf('SIG-2');
  const content = signedContent(next);
  expect(String(next.headers['webhook-signature']).split(' ')).toEqual([
    `v1,${await opensslSignature(rotated.secret, content)}`,
    `v1,${await opensslSignature(endpoint.secret, content)}`,
  ]);
});
