import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestContext, json, repoRoot, type TestContext } from '../helpers/context.js';

let ctx: TestContext;
// biome-ignore lint/suspicious/noExplicitAny: a JSON document walked by key
let document: Record<string, any>;
let dir: string;
beforeAll(async () => {
  ctx = await createTestContext();
  const response = await ctx.request({ method: 'GET', url: '/docs/json' });
  expect(response.statusCode).toBe(200);
  document = json(response);
  dir = await mkdtemp(path.join(tmpdir(), 'stockflow-openapi-'));
  if (process.env.OPENAPI_DUMP) await writeFile(process.env.OPENAPI_DUMP, JSON.stringify(document, null, 2));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await ctx.close();
});

it('passes redocly lint with the recommended ruleset: no errors', async () => {
  const file = path.join(dir, 'openapi.json');
  await writeFile(file, JSON.stringify(document));
  const run = promisify(execFile);
  const result = await run(
    path.join(repoRoot, 'node_modules/.bin/redocly'),
    ['lint', file, '--extends', 'recommended', '--format', 'json'],
    {
      env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
      maxBuffer: 1 << 24,
    },
  ).catch((error: { stdout: string }) => ({ stdout: error.stdout }));
  const report = JSON.parse(result.stdout) as {
    totals: { errors: number; warnings: number };
    problems: { ruleId: string; severity: string; message: string; location: { pointer: string }[] }[];
  };
  const errors = report.problems.filter((p) => p.severity === 'error');
  expect(errors.map((p) => `${p.ruleId}: ${p.message} at ${p.location[0]?.pointer}`)).toEqual([]);
  if (process.env.OPENAPI_DUMP)
    console.log(report.problems.map((p) => `${p.severity} ${p.ruleId} ${p.location[0]?.pointer}`).join('\n'));
});

type Json = Record<string, unknown>;
const httpMethods = ['get', 'put', 'post', 'delete', 'patch'];

/** Every operation of the document with its method and path. */
function operations(): { method: string; path: string; operation: Json }[] {
  return Object.entries(document.paths as Record<string, Record<string, Json>>).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([method]) => httpMethods.includes(method))
      .map(([method, operation]) => ({ method, path, operation })),
  );
}

/** Every `example` in the document (schema-level, property-level and media-type-level) with its schema. */
function examples(): { where: string; schema: unknown; example: unknown }[] {
  const found: { where: string; schema: unknown; example: unknown }[] = [];
  const visit = (node: unknown, where: string) => {
    if (Array.isArray(node)) {
      for (const [i, child] of node.entries()) visit(child, `${where}/${i}`);
    } else if (node && typeof node === 'object') {
      const object = node as Json;
      // A schema with an example, or a media type object (schema + example) beside it.
      if ('example' in object) {
        const schema = 'schema' in object ? object.schema : object;
        found.push({ where, schema, example: object.example });
      }
      for (const [key, value] of Object.entries(object))
        if (key !== 'example') visit(value, `${where}/${key}`);
    }
  };
  visit(document.paths, '#/paths');
  visit(document.components, '#/components');
  return found;
}

/** OpenAPI 3.0 schemas for ajv: component refs point into `$defs`, `example` is an annotation. */
function validatorFor(ajv: Ajv, schema: unknown) {
  const refs = JSON.parse(
    JSON.stringify({ ...(schema as Json), $defs: document.components.schemas }).replaceAll(
      '#/components/schemas/',
      '#/$defs/',
    ),
  );
  return ajv.compile(refs);
}

it('documents every route, its problems, job headers and the multipart upload', () => {
  const ids = operations().map((o) => o.operation.operationId);
  expect(new Set(ids).size).toBe(ids.length);
  const paths = Object.keys(document.paths);
  for (const path of ['/metrics', '/api/pms/events/ws', '/api/pms/events/types'])
    expect(paths).toContain(path);
  // Every route the app registered (except the docs, Bull Board and the media files) is in the document.
  const documented = new Set(operations().map((o) => `${o.method.toUpperCase()} ${o.path}`));
  const registered = ctx.app.declaredRoutes
    .filter(
      (r) => !/^\/(docs|admin\/queues|admin\/ops\/queues|media)(\/|$)/.test(r.url) && r.method !== 'HEAD',
    )
    .map((r) => `${r.method} ${r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')}`);
  expect(registered.filter((r) => !documented.has(r))).toEqual([]);

  for (const { method, path, operation } of operations()) {
    const responses = operation.responses as Record<string, Json>;
    const problems = Object.entries(responses).filter(([status]) => Number(status) >= 400);
    expect(problems.length, `${method} ${path} declares no problem`).toBeGreaterThan(0);
    for (const [, response] of problems) {
      expect(response.content).toEqual({
        'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } },
      });
    }
  }
  const create = document.paths['/api/pms/products'].post;
  expect(create.parameters.map((p: Json) => p.name)).toEqual(
    expect.arrayContaining(['Prefer', 'Idempotency-Key']),
  );
  expect(Object.keys(create.responses[202].headers)).toEqual(['Location']);
  expect(Object.keys(create.responses[201].headers)).toEqual(['Location', 'Preference-Applied']);
  expect(Object.keys(document.paths['/api/pms/products/{sku}'].get.responses[200].headers)).toEqual(['ETag']);
  expect(document.paths['/api/pms/products/{sku}'].put.responses[428]).toBeDefined();
  const deleted = document.paths['/api/webhooks/endpoints/{id}'].delete.responses;
  expect(deleted[204]).toEqual({ description: 'Deleted' });
  expect(deleted[200]).toBeUndefined();
  const upload = document.paths['/api/pms/products/{sku}/images'].post.requestBody.content;
  expect(upload['multipart/form-data'].schema.properties.file).toMatchObject({
    type: 'string',
    format: 'binary',
  });
  expect(document.paths['/metrics'].get.responses[200].content).toHaveProperty(['text/plain']);
  expect(document.components.schemas['EventData.stock.moved'].properties).toHaveProperty('onHandAfter');
  const delivery =
    document.paths['/api/webhooks/endpoints'].post.callbacks.delivery['{$request.body#/url}'].post;
  expect(delivery.requestBody.content['application/json'].schema.properties.data.anyOf).toContainEqual({
    $ref: '#/components/schemas/EventData.stock.moved',
  });
  expect(document.servers).toEqual([{ url: '/', description: 'This deployment' }]);
});

it("has examples that validate against their own schemas and pass the route's intake", async () => {
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats.default(ajv);
  const found = examples();
  expect(found.length).toBeGreaterThan(15);
  const invalid = found.flatMap(({ where, schema, example }) => {
    const validate = validatorFor(ajv, schema);
    return validate(example) ? [] : [`${where}: ${ajv.errorsText(validate.errors)}`];
  });
  expect(invalid).toEqual([]);

  // Swagger UI's "Try it out" sends the JSON example: the route's own validation must accept it.
  const params: Record<string, string> = {
    sku: 'TSHIRT-RED-M',
    id: '00000000-0000-4000-8000-000000000000',
    imageId: '00000000-0000-4000-8000-000000000000',
    code: 'warehouse',
  };
  let tried = 0;
  for (const { method, path, operation } of operations()) {
    const body = (operation.requestBody as { content?: Record<string, Json> } | undefined)?.content?.[
      'application/json'
    ];
    const example = body?.example ?? (body?.schema as Json | undefined)?.example;
    if (example === undefined) continue;
    const url = path.replace(/\{(\w+)\}/g, (_, name: string) => params[name] ?? 'x');
    const response = await ctx.request({
      method: method.toUpperCase() as 'POST',
      url,
      payload: example as Json,
      key: ctx.adminKey,
      headers: { 'if-match': '"1"' },
    });
    expect([400, 415, 422], `${method} ${path}: ${response.body}`).not.toContain(response.statusCode);
    tried += 1;
  }
  expect(tried).toBeGreaterThanOrEqual(15);
});
