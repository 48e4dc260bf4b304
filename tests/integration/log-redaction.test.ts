import { Writable } from 'node:stream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { rawRequest } from '../helpers/raw-http.js';

/** Every line the context logged, as text. */
let output = '';
const capture = new Writable({
  write(chunk, _encoding, done) {
    output += chunk.toString();
    done();
  },
});

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext({ env: { LOG_LEVEL: 'trace' }, logDestination: capture });
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
});
afterAll(() => ctx?.close());

it('never logs an API key, a cookie or a webhook signature, whatever the request logs', async () => {
  const port = (ctx.app.server.address() as { port: number }).port;
  const wrongKey = 'sf_wrong-key-that-must-not-be-logged-0123456789abcdef';
  const headers = {
    cookie: 'session=cookie-value-must-not-be-logged',
    'webhook-signature': 'v1,sig-must-not-be-logged',
  };
  await rawRequest(port, {
    method: 'GET',
    target: '/api/pms/products',
    headers: { ...headers, authorization: `Bearer ${ctx.pmsKey}` },
  });
  await rawRequest(port, {
    method: 'GET',
    target: '/api/pms/products',
    headers: { authorization: `Bearer ${wrongKey}` },
  });
  const basic = Buffer.from(`ops:${ctx.adminKey}`).toString('base64');
  await rawRequest(port, {
    method: 'GET',
    target: '/admin/queues/api/queues',
    headers: { authorization: `Basic ${basic}` },
  });
  // A logger call that carries headers (as a plugin's or a handler's might) is redacted too.
  ctx.api.log.info({ req: { headers: { authorization: `Bearer ${ctx.adminKey}`, ...headers } } }, 'headers');
  ctx.api.log.info({ endpoint: { secret: 'whsec_must-not-be-logged' }, apiKey: ctx.pmsKey }, 'fields');

  expect(output).toContain('incoming request');
  expect(output).toContain('[redacted]');
  for (const secret of [
    ctx.pmsKey,
    ctx.adminKey,
    wrongKey,
    basic,
    'cookie-value-must-not-be-logged',
    'sig-must-not-be-logged',
    'whsec_must-not-be-logged',
  ]) {
    expect(output, secret).not.toContain(secret);
  }
});

it('logs a failed insert without its bound values (no 2 MiB of image bytes)', async () => {
  const marker = 'BOUND-VALUE-MARKER';
  const bytes = Buffer.from(marker.repeat(120_000));
  const error = await ctx.api
    .db('image_uploads')
    .insert({
      image_id: '00000000-0000-4000-8000-000000000001',
      sha256: 'not-a-sha256',
      bytes,
      byte_size: bytes.length,
    })
    .catch((e: unknown) => e as Error);
  expect(error).toBeInstanceOf(Error);
  const before = output.length;
  ctx.api.log.error({ err: error }, 'could not stage the upload');
  const line = output.slice(before);
  expect(line).toContain('image_uploads_sha256_format');
  // The statement with placeholders only; Postgres's own detail shows at most a truncated row.
  expect(line).toContain('values ($1, $2, $3, $4)');
  expect(line).not.toContain(marker);
  expect(line.length).toBeLessThan(4096);
});

it('logs a 500 from a database error without its detail, where, hint or values (no "Failing row contains")', async () => {
  const port = (ctx.app.server.address() as { port: number }).port;
  // A constraint the API does not check first: the insert fails in Postgres, the request answers 500.
  await ctx.api.db.raw(
    `alter table webhook_endpoints add constraint test_description_not_boom
       check (description is distinct from 'boom') not valid`,
  );
  const before = output.length;
  const res = await rawRequest(port, {
    method: 'POST',
    target: '/api/webhooks/endpoints',
    headers: { authorization: `Bearer ${ctx.adminKey}` },
    body: JSON.stringify({
      url: 'https://hooks.example.com/in?token=URL-TOKEN-MARKER',
      eventTypes: ['product.*'],
      description: 'boom',
    }),
  });
  expect(res.status).toBe(500);
  const requestId = JSON.parse(res.body).requestId as string;
  const logged = output.slice(before);
  // The failure is logged, with what an operator needs: the request, the constraint, the code.
  const line = logged.split('\n').find((l) => l.includes('"request failed"') && l.includes(requestId));
  expect(line).toBeDefined();
  expect(line).toContain('test_description_not_boom');
  expect(line).toContain('23514');
  // Never the row: its URL with a token, its sealed signing secret, or Postgres's detail at all.
  for (const leak of ['URL-TOKEN-MARKER', 'Failing row contains', 'sf1:', 'sf2:', '"detail"', '"where"']) {
    expect(logged, leak).not.toContain(leak);
  }
  await ctx.api.db.raw('alter table webhook_endpoints drop constraint test_description_not_boom');
});
