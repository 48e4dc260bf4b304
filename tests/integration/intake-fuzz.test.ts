import fc from 'fast-check';
import type { InjectOptions } from 'fastify';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { z } from 'zod';
import type { DeclaredRoute } from '../../src/api/auth.js';
import { generateSecret } from '../../src/webhooks/signing.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';

/**
 * Every mutation route, fed requests generated from its own zod schemas (through their JSON
 * Schema) with hostile values mixed in: NUL, lone surrogates, `.`/`..`, huge and deep values,
 * extreme numbers, wrong types. The API must never answer 5xx, and no job it accepts may then
 * fail for its input: every accepted job completes, or fails at once with a domain error.
 */

type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  enum?: unknown[];
  const?: unknown;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  format?: string;
};

const hostileStrings = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '\ud800',
  'x\udc00',
  '\ud83d\ude00',
  '.',
  '..',
  '../etc/passwd',
  '%00',
  "'; drop table products; --",
  'x'.repeat(5000),
  'ä'.repeat(300),
];
/** URL fields only ever name places the guard refuses: the fuzz must never reach a real host. */
const urls = [
  'http://127.0.0.1:9/x',
  'http://localhost./x',
  'http://[::1]/',
  'http://10.0.0.1/',
  'ftp://x/',
  'not a url',
];
/** Stands for 5,000 levels of nesting, spliced into the JSON text (JSON.stringify would overflow the stack). */
const deepMarker = '__DEEP__';
const deepText = `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`;

function arbitraryFor(schema: JsonSchema, name = '', withHostile = true): fc.Arbitrary<unknown> {
  if (name === 'url' || name === 'sourceUrl') return fc.constantFrom(...urls);
  if (name === 'currency')
    return fc.oneof(
      { weight: 9, arbitrary: fc.constantFrom('EUR', 'USD', 'JPY') },
      { weight: 1, arbitrary: fc.constantFrom(...hostileStrings) },
    );
  const variants = schema.anyOf ?? schema.oneOf;
  if (variants) return fc.oneof(...variants.map((s) => arbitraryFor(s, name, withHostile)));
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (schema.enum) return fc.oneof(fc.constantFrom(...schema.enum), fc.constantFrom(...hostileStrings));
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  const hostile = fc.oneof(
    fc.constantFrom<unknown>(...hostileStrings, null, true, -1, 0, 2 ** 31, 2 ** 53, -(2 ** 63), 1.5, 1e308),
    fc.constant([]),
    fc.constant({}),
  );
  const wellTyped = (): fc.Arbitrary<unknown> => {
    switch (type) {
      case 'object': {
        const properties = schema.properties ?? {};
        if (Object.keys(properties).length === 0) {
          return fc.oneof(
            fc.dictionary(
              fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom(...hostileStrings)),
              fc.jsonValue({ maxDepth: 3 }),
              { maxKeys: 5 },
            ),
            fc.constant({ nested: deepMarker }),
          );
        }
        const record: Record<string, fc.Arbitrary<unknown>> = {};
        for (const [key, value] of Object.entries(properties))
          record[key] = arbitraryFor(value, key, withHostile);
        return fc.record(record, { requiredKeys: schema.required ?? [] });
      }
      case 'array':
        return fc.array(
          schema.items ? arbitraryFor(schema.items, name, withHostile) : fc.jsonValue({ maxDepth: 2 }),
          {
            minLength: schema.minItems ?? 0,
            maxLength: Math.min(schema.maxItems ?? 5, 5),
          },
        );
      case 'string':
        if (schema.pattern && !schema.format) return fc.stringMatching(new RegExp(schema.pattern));
        if (schema.format === 'date-time')
          return fc.date({ noInvalidDate: true }).map((d) => d.toISOString());
        if (schema.format === 'uuid') return fc.uuid();
        return fc.string({
          minLength: schema.minLength ?? 0,
          maxLength: Math.min(schema.maxLength ?? 40, 40),
        });
      case 'integer':
        return fc.integer({
          min: Math.max(schema.minimum ?? -1e6, -(2 ** 53) + 1),
          max: Math.min(schema.maximum ?? 1e6, 2 ** 53 - 1),
        });
      case 'number':
        return fc.double({ noNaN: true, noDefaultInfinity: true, min: schema.minimum, max: schema.maximum });
      case 'boolean':
        return fc.boolean();
      case 'null':
        return fc.constant(null);
      default:
        return fc.jsonValue({ maxDepth: 3 });
    }
  };
  if (!withHostile) return wellTyped();
  return fc.oneof({ weight: 12, arbitrary: wellTyped() }, { weight: 1, arbitrary: hostile });
}

const paramValues: Record<string, string[]> = {
  sku: ['FZ-1', 'NOPE-1', '.', '..', 'x'.repeat(65), '%00', 'a%00b', '%ED%A0%80'],
  code: ['LOC-1', 'NOPE', '..', '%00'],
  id: ['00000000-0000-4000-8000-000000000000', 'not-a-uuid', '%00'],
  imageId: ['00000000-0000-4000-8000-000000000000', 'x', '%00'],
};

const pathArbitrary = (url: string) =>
  fc
    .tuple(
      ...url.split('/').map((part) => {
        if (!part.startsWith(':')) return fc.constant(part);
        const [usual = 'x', ...odd] = paramValues[part.slice(1)] ?? ['x'];
        return fc.oneof(
          { weight: 6, arbitrary: fc.constant(usual) },
          { weight: 1, arbitrary: fc.constantFrom(usual, ...odd) },
        );
      }),
    )
    .map((parts) => parts.join('/'));

/** Paths of every string in a JSON value. */
function stringLeaves(value: unknown, path: (string | number)[] = []): (string | number)[][] {
  if (typeof value === 'string') return [path];
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([key, item]) =>
    stringLeaves(item, [...path, Array.isArray(value) ? Number(key) : key]),
  );
}

/** A copy of `value` with the leaf at `path` replaced. */
function replaceAt(value: unknown, path: (string | number)[], leaf: unknown): unknown {
  if (path.length === 0) return leaf;
  const [head, ...rest] = path;
  const copy = (Array.isArray(value) ? [...value] : { ...(value as object) }) as Record<
    string | number,
    unknown
  >;
  copy[head!] = replaceAt(copy[head!], rest, leaf);
  return copy;
}

let ctx: TestContext;
let routes: DeclaredRoute[];
beforeAll(async () => {
  ctx = await createTestContext({
    workers: true,
    env: { RATE_LIMIT_PER_SECOND: '0', INBOUND_WEBHOOK_SECRET: inboundSecret },
  });
  routes = ctx.app.declaredRoutes.filter(
    (r) => ['POST', 'PUT', 'PATCH', 'DELETE'].includes(r.method) && r.url.startsWith('/api/'),
  );
  for (const [url, payload] of [
    ['/api/pms/products', { sku: 'FZ-1', name: 'Fuzz', price: { amount: 100, currency: 'EUR' } }],
    ['/api/pms/locations', { code: 'LOC-1', name: 'Dock' }],
  ] as const) {
    const res = await ctx.request({ method: 'POST', url, headers: { prefer: 'wait=10' }, payload });
    expect(res.statusCode, url).toBe(201);
  }
});
afterAll(() => ctx?.close());

/** The PMS's signed webhooks take no key: the fuzz signs each body, as the PMS would, to reach their parsing. */
const inboundSecret = generateSecret();
let deliveries = 0;
function credentials(route: DeclaredRoute, payload: string | undefined): Record<string, string> {
  if (route.url.startsWith('/api/pms/webhook/')) {
    const id = `fuzz-${++deliveries}`;
    const at = new Date();
    return {
      'webhook-id': id,
      'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
      'webhook-signature': new Webhook(inboundSecret).sign(id, at, payload ?? ''),
    };
  }
  return {};
}

it('never answers 5xx and never accepts a job that then fails for its input, on any mutation route', async () => {
  expect(routes.length).toBeGreaterThan(20);
  const accepted: string[] = [];
  const failures: string[] = [];
  for (const route of routes) {
    const bodySchema = (route.schema as { body?: z.ZodType } | undefined)?.body;
    const body = bodySchema
      ? arbitraryFor(z.toJSONSchema(bodySchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema)
      : fc.option(fc.jsonValue({ maxDepth: 2 }), { nil: undefined });
    const request = fc.record({
      path: pathArbitrary(route.url),
      body,
      ifMatch: fc.option(fc.constantFrom('1', '"1"', 'W/"2"', 'x', '99999999999'), { nil: undefined }),
      idempotencyKey: fc.option(fc.constantFrom('k-1', 'k-2', 'x'.repeat(300)), { nil: undefined }),
      deep: fc.oneof(
        { weight: 9, arbitrary: fc.constant(false) },
        { weight: 1, arbitrary: fc.constant(true) },
      ),
    });
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const payload =
          r.deep && r.body && typeof r.body === 'object' ? { ...r.body, attributes: deepMarker } : r.body;
        const text =
          payload === undefined ? undefined : JSON.stringify(payload).replaceAll(`"${deepMarker}"`, deepText);
        const options: InjectOptions & { key: string } = {
          method: route.method as 'POST',
          url: r.path,
          key: route.scope === 'admin' ? ctx.adminKey : ctx.pmsKey,
          headers: {
            ...(r.ifMatch ? { 'if-match': r.ifMatch } : {}),
            ...(r.idempotencyKey ? { 'idempotency-key': r.idempotencyKey } : {}),
            ...(text !== undefined ? { 'content-type': 'application/json' } : {}),
            ...credentials(route, text),
          },
          ...(text !== undefined ? { payload: text } : {}),
        };
        const res = await ctx.request(options);
        if (res.statusCode >= 500)
          failures.push(`${route.method} ${r.path} -> ${res.statusCode} ${res.body.slice(0, 300)}`);
        if (res.statusCode === 202) accepted.push(json(res).id);
      }),
      { numRuns: 40, seed: 8 },
    );
  }
  // The corpus: a valid body generated from the route's schema, with each string in it replaced
  // by each value that can never be stored (and the attributes made 5,000 levels deep).
  let corpusRequests = 0;
  for (const route of routes) {
    const bodySchema = (route.schema as { body?: z.ZodType } | undefined)?.body;
    if (!bodySchema) continue;
    const jsonSchema = z.toJSONSchema(bodySchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
    const base = fc
      .sample(arbitraryFor(jsonSchema, '', false), { numRuns: 300, seed: 3 })
      .find((candidate) => bodySchema.safeParse(candidate).success);
    if (base === undefined) continue;
    const path = route.url.replace(/:(\w+)/g, (_m, name: string) => paramValues[name]?.[0] ?? 'x');
    for (const leaf of stringLeaves(base)) {
      for (const value of ['\u0000', 'a\u0000b', '\ud800', 'x\udc00', '.', '..', 'x'.repeat(5000)]) {
        const text = JSON.stringify(replaceAt(base, leaf, value));
        const res = await ctx.request({
          method: route.method as 'POST',
          url: path,
          key: route.scope === 'admin' ? ctx.adminKey : ctx.pmsKey,
          headers: { 'content-type': 'application/json', ...credentials(route, text) },
          payload: text,
        });
        corpusRequests++;
        if (res.statusCode >= 500)
          failures.push(
            `corpus ${route.method} ${path} ${leaf.join('.')}=${JSON.stringify(value).slice(0, 20)} -> ${res.statusCode}`,
          );
        if (res.statusCode === 202) accepted.push(json(res).id);
        if (['\u0000', 'a\u0000b', '\ud800', 'x\udc00'].includes(value)) {
          expect(res.statusCode, `${route.url} ${leaf.join('.')}`).toBe(400);
        }
      }
    }
  }
  expect(corpusRequests).toBeGreaterThan(100);
  expect(failures).toEqual([]);
  expect(accepted.length).toBeGreaterThan(50);

  const badJobs: string[] = [];
  for (const id of accepted) {
    const status = await ctx.waitForJob(id, 30_000);
    if (status.state !== 'failed') continue;
    const code = status.error?.code;
    if (code === 'invalid_payload' || code === 'job_failed' || status.attemptsMade > 1) {
      badJobs.push(`${id}: ${code} after ${status.attemptsMade} attempt(s): ${status.error?.message}`);
    }
  }
  expect(badJobs).toEqual([]);
}, 240_000);
