import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, RouteOptions } from 'fastify';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { eventTypes } from '../schemas/event-types.js';
import { assignScope } from './auth.js';
import { problemSchema } from './problems.js';
import { jobHandleSchema } from './submit-job.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** What the OpenAPI document cannot learn from the route's zod schemas (see `registerDocs`). */
    openapi?: RouteDocs;
  }
}

type JsonObject = Record<string, unknown>;

export interface RouteDocs {
  /** A request body the route parses itself (multipart uploads), as an OpenAPI requestBody. */
  requestBody?: JsonObject;
  /** Problem statuses beyond the ones every route of its kind gets (e.g. 428). */
  problems?: number[];
  /** Response headers per status, beyond Location / Preference-Applied of job routes. */
  headers?: Record<number, Record<string, JsonObject>>;
}

/** What each problem status means, for every operation that can answer it. */
const problemDescriptions: Record<number, string> = {
  400: 'Invalid input (`validation_failed` lists every field), malformed JSON or URL',
  401: 'No key, or an unknown or revoked one (`unauthorized`)',
  403: 'The key lacks the scope this route needs (`forbidden`)',
  404: 'Not found (`not_found`)',
  409: 'A conflict with the current state (`version_conflict`, `sku_taken`, `insufficient_stock`, …)',
  413: 'Body over the size limit (`payload_too_large`)',
  414: 'A path segment over the length limit (`uri_too_long`)',
  415: 'A media type this route does not take (`unsupported_media_type`)',
  422: 'Well-formed but refused (`idempotency_key_reused`, `unknown_event_type`, a broken business rule, …)',
  428: 'A version precondition is required (`precondition_required`)',
  500: 'Something went wrong on our side (`internal_error`; the requestId finds it in the logs)',
  503: 'Postgres or Redis unavailable (`service_unavailable`, with Retry-After): repeat the request later. A mutation was not accepted (after a timeout it may have been: repeat it with its Idempotency-Key); a job state cannot be read now',
};

const successDescriptions: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  202: 'Accepted: the job is queued; poll its Location',
  204: 'Done; no content',
};

const header = (description: string, schema: JsonObject = { type: 'string' }) => ({ description, schema });
const locationHeader = header('The job to poll: /api/jobs/{id}');
const preferenceApplied = header('`wait=N` when the answer is the finished job (Prefer: wait was honoured)');

/** Request headers of every route that turns a mutation into a job through `submitJob`. */
const jobParameters = [
  {
    name: 'Prefer',
    in: 'header',
    required: false,
    description:
      '`wait=N` (1–30 s): answer with the outcome (200/201 or the job’s problem) instead of 202 when the job finishes in time',
    schema: { type: 'string', pattern: '^wait=\\d+$' },
    example: 'wait=10',
  },
  {
    name: 'Idempotency-Key',
    in: 'header',
    required: false,
    description:
      'The same key and body return the same job; the same key with another body is 422 `idempotency_key_reused`',
    schema: { type: 'string', minLength: 1, maxLength: 255 },
  },
];

interface RouteFacts {
  route: RouteOptions;
  /** 202 with a job handle. */
  job: boolean;
  /** 202 and the finished job's 200/201: `submitJob`, which honours Prefer and Idempotency-Key. */
  waitable: boolean;
}

const openapiPath = (url: string) => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

/** `post /api/pms/products/{sku}/publish` → `postProductsSkuPublish`: stable and unique per route. */
function operationId(method: string, path: string): string {
  const words = path
    .split(/[/{}\-._]+/)
    .filter((w) => w && w !== 'api' && w !== 'pms')
    .map((w) => w[0]!.toUpperCase() + w.slice(1));
  return `${method.toLowerCase()}${words.join('')}`;
}

/**
 * OpenAPI 3 generated from the routes' zod schemas: JSON at /docs/json, Swagger UI at /docs (a
 * valid key of any scope, unless `public`). The generator sees each route's params, query, body
 * and success responses; this module adds what every route of a kind shares, so a new route gets
 * it by declaring nothing: its problem responses (application/problem+json, one Problem schema),
 * an operationId, and for job routes the Prefer / Idempotency-Key headers and the Location /
 * Preference-Applied response headers. What a route parses itself (multipart) it declares in
 * `config.openapi`. WebSocket routes are documented as their upgrade.
 */
export async function registerDocs(app: FastifyInstance, options: { public: boolean }): Promise<void> {
  const routes = new Map<string, RouteFacts>();
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const response = (route.schema?.response ?? {}) as Record<string, unknown>;
    const job = response[202] === jobHandleSchema;
    const waitable = job && (response[200] !== undefined || response[201] !== undefined);
    for (const method of methods) {
      if (method === 'HEAD') continue;
      routes.set(`${method.toLowerCase()} ${openapiPath(route.url)}`, { route, job, waitable });
    }
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Stockflow API',
        version: '0.1.0',
        description:
          'Every mutation is a job: it answers 202 with a job handle to poll at /api/jobs/{id}, or the ' +
          'outcome with `Prefer: wait=<seconds>`. Errors are application/problem+json with a stable `code`.',
      },
      // Relative: the document describes the deployment that serves it.
      servers: [{ url: '/', description: 'This deployment' }],
      components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer' } } },
      security: [{ apiKey: [] }],
    },
    transform: jsonSchemaTransform,
    transformObject: (document) =>
      completeDocument(jsonSchemaTransformObject(document) as JsonObject, routes),
  });
  await app.register(async (docs) => {
    assignScope(docs, options.public ? 'public' : 'key');
    await docs.register(swaggerUi, { routePrefix: '/docs' });
  });
}

type Operation = JsonObject & { responses: Record<string, JsonObject>; parameters?: JsonObject[] };

function completeDocument(document: JsonObject, routes: Map<string, RouteFacts>): JsonObject {
  const paths = (document.paths ?? {}) as Record<string, Record<string, Operation>>;
  for (const [key, facts] of routes) {
    const [method, path] = key.split(' ') as [string, string];
    const operation = paths[path]?.[method];
    if (operation) completeOperation(method, path, operation, facts);
    else if (facts.route.websocket) {
      paths[path] = { ...paths[path], [method]: websocketOperation(method, path, facts.route) };
    }
  }
  const components = (document.components ?? {}) as { schemas?: JsonObject };
  components.schemas = {
    ...components.schemas,
    Problem: z.toJSONSchema(problemSchema, { target: 'openapi-3.0', io: 'input' }),
  };
  components.schemas = { ...referencedOnly(components.schemas, paths), ...eventDataSchemas() };
  const register = paths['/api/webhooks/endpoints']?.post;
  if (register) register.callbacks = { delivery: webhookDelivery() };
  return nullableEnumsAllowNull({ ...document, paths, components }) as JsonObject;
}

/**
 * OpenAPI 3.0.3: a `nullable` schema with an `enum` admits null only when the enum lists it (zod's
 * conversion leaves it out), so a nullable status would refuse its own null examples.
 */
function nullableEnumsAllowNull(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(nullableEnumsAllowNull);
  if (node === null || typeof node !== 'object') return node;
  const object = Object.fromEntries(
    Object.entries(node).map(([key, value]) => [key, nullableEnumsAllowNull(value)]),
  ) as JsonObject;
  if (object.nullable === true && Array.isArray(object.enum) && !object.enum.includes(null)) {
    object.enum = [...object.enum, null];
  }
  return object;
}

/**
 * The `data` of each event type (GET /api/pms/events/types serves the same as JSON Schema), as
 * components `EventData.<type>`: what a client generator needs to type the feed, streams and
 * webhook payloads. Inlined (no refs to the resource components), open to added fields.
 */
function eventDataSchemas(): JsonObject {
  return Object.fromEntries(
    eventTypes.map((t) => [
      `EventData.${t.name}`,
      {
        ...z.toJSONSchema(t.data, { target: 'openapi-3.0', io: 'input', metadata: z.registry() }),
        description: t.description,
      },
    ]),
  );
}

/** What an endpoint receives: the delivery POST, its body typed by the event data components. */
function webhookDelivery(): JsonObject {
  const signed = (name: string, description: string) => ({
    name,
    in: 'header',
    required: true,
    description,
    schema: { type: 'string' },
  });
  return {
    '{$request.body#/url}': {
      post: {
        operationId: 'receiveWebhookDelivery',
        summary: 'One event delivered to the endpoint (Standard Webhooks signature)',
        parameters: [
          signed('webhook-id', 'The event id: the same on every retry and replay; process each once'),
          signed('webhook-timestamp', 'When this attempt was sent, in seconds'),
          signed(
            'webhook-signature',
            '`v1,<base64 HMAC-SHA256 of id.timestamp.body>`; two during a rotation',
          ),
        ],
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: {
                type: 'object',
                required: ['id', 'type', 'timestamp', 'seq', 'aggregate', 'data'],
                properties: {
                  id: { type: 'string' },
                  type: { type: 'string', enum: eventTypes.map((t) => t.name) },
                  timestamp: { type: 'string', format: 'date-time' },
                  seq: { type: 'integer' },
                  aggregate: {
                    type: 'object',
                    properties: { type: { type: 'string' }, id: { type: 'string' } },
                  },
                  data: {
                    anyOf: eventTypes.map((t) => ({ $ref: `#/components/schemas/EventData.${t.name}` })),
                  },
                },
              },
            },
          },
        },
        responses: {
          '2XX': { description: 'Delivered' },
          410: { description: 'Gone: the endpoint is disabled at once' },
          '4XX': {
            description: 'A failure: retried on the retry schedule (429 with Retry-After waits that long)',
          },
        },
      },
    },
  };
}

/** The generator emits an input and an output copy of every named schema: keep those in use. */
function referencedOnly(schemas: JsonObject, paths: unknown): JsonObject {
  const used = new Set<string>();
  const visit = (node: unknown) => {
    if (Array.isArray(node)) node.forEach(visit);
    else if (node && typeof node === 'object') {
      for (const [key, value] of Object.entries(node)) {
        const name = key === '$ref' && typeof value === 'string' ? value.split('/').pop() : undefined;
        if (name && !used.has(name)) {
          used.add(name);
          visit(schemas[name]);
        } else visit(value);
      }
    }
  };
  visit(paths);
  return Object.fromEntries(Object.entries(schemas).filter(([name]) => used.has(name)));
}

function completeOperation(method: string, path: string, operation: Operation, facts: RouteFacts) {
  const { route, job, waitable } = facts;
  const docs = route.config?.openapi ?? {};
  const schema = (route.schema ?? {}) as JsonObject;
  operation.operationId ??= operationId(method, path);
  if (docs.requestBody) operation.requestBody = docs.requestBody;

  for (const [status, response] of Object.entries(operation.responses)) {
    if (response.description === 'Default Response') {
      response.description = successDescriptions[Number(status)] ?? 'OK';
    }
    // A 204 has no body, whatever the generator made of an empty schema.
    if (status === '204') delete response.content;
    const headers: Record<string, JsonObject> = { ...docs.headers?.[Number(status)] };
    if (job && (status === '202' || waitable)) headers.Location = locationHeader;
    if (waitable && status !== '202') headers['Preference-Applied'] = preferenceApplied;
    if (Object.keys(headers).length > 0)
      response.headers = { ...(response.headers as JsonObject), ...headers };
  }
  if (waitable) operation.parameters = [...(operation.parameters ?? []), ...jobParameters];

  const body = schema.body !== undefined || docs.requestBody !== undefined;
  const input = body || ['params', 'querystring', 'headers'].some((part) => schema[part] !== undefined);
  const problems = [
    500,
    // Postgres (or, for job routes, Redis) unavailable: repeat later (src/api/errors.ts).
    503,
    ...(docs.problems ?? []),
    ...(route.config?.scope !== 'public' ? [401, 403] : []),
    ...(input ? [400] : []),
    ...(schema.params ? [404, 414] : []),
    ...(body ? [413, 415] : []),
    // A waited-for job ends with its own problem.
    ...(waitable ? [404, 409, 422] : []),
  ];
  for (const status of [...new Set(problems)].sort()) {
    operation.responses[status] ??= {
      description: problemDescriptions[status] ?? 'Problem',
      content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
    };
  }
}

function websocketOperation(method: string, path: string, route: RouteOptions): Operation {
  const schema = (route.schema ?? {}) as { summary?: string; tags?: string[] };
  return {
    operationId: operationId(method, path),
    summary: schema.summary ?? 'WebSocket',
    description:
      'A WebSocket: send `Connection: Upgrade` and `Upgrade: websocket` (any WebSocket client does). ' +
      'Messages are JSON; see docs/events.md for the protocol.',
    tags: schema.tags ?? [],
    responses: {
      101: {
        description: 'Switching protocols: the socket is open',
        headers: { Upgrade: header('websocket'), Connection: header('Upgrade') },
      },
      ...Object.fromEntries(
        [401, 403, 500].map((status) => [
          status,
          {
            description: problemDescriptions[status],
            content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
          },
        ]),
      ),
    },
  };
}
