import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { HttpProblem } from '../../errors/http-problem.js';
import { productJobs, type productRefPayload, updateProductPayload } from '../../queues/products.js';
import { cursors } from '../../schemas/fields.js';
import { createProductPayload, productSchema, skuSchema, versionSchema } from '../../schemas/products.js';
import type { ApiDeps } from '../deps.js';
import { problem, sendProblem } from '../problems.js';
import { jobHandleSchema, submitJob } from '../submit-job.js';

const skuParams = z.object({ sku: skuSchema });
const ifMatchHeaders = z.object({
  'if-match': z
    .string()
    .regex(/^(W\/)?"?\d+"?$/, 'must be the product version, e.g. "3"')
    .optional(),
});
const accepted = { 202: jobHandleSchema };

/** `If-Match: "3"` (the ETag we send), `W/"3"` or `3` → 3. */
function versionFromIfMatch(header: string | undefined): number | undefined {
  const digits = header?.match(/\d+/)?.[0];
  return digits === undefined ? undefined : Number(digits);
}

/** The payload of a change its path names alone (archive, publish): the sku and the If-Match version. */
const productRef = (request: {
  params: { sku: string };
  headers: { 'if-match'?: string | undefined };
}): z.input<typeof productRefPayload> => ({
  sku: request.params.sku,
  expectedVersion: versionFromIfMatch(request.headers['if-match']),
});

function expectedVersion(header: string | undefined, body: number | undefined): number | undefined {
  const fromHeader = versionFromIfMatch(header);
  if (fromHeader !== undefined && body !== undefined && fromHeader !== body) {
    throw new HttpProblem(400, 'validation_failed', 'If-Match and expectedVersion disagree', {
      errors: [
        { in: 'headers', path: 'if-match', message: `is ${fromHeader} but expectedVersion is ${body}` },
      ],
    });
  }
  return fromHeader ?? body;
}

export function registerProductRoutes(root: FastifyInstance, deps: ApiDeps): void {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const tags = ['products'];

  app.post(
    '/api/pms/products',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Create a product (job product.create; duplicate sku fails with sku_taken)',
        body: createProductPayload.meta({
          example: { sku: 'TSHIRT-RED-M', name: 'T-shirt red M', price: { amount: 1999, currency: 'EUR' } },
        }),
        response: { ...accepted, 201: productSchema },
      },
    },
    (request, reply) =>
      submitJob(deps, request, reply, productJobs.create, request.body, { successStatus: 201 }),
  );

  app.put(
    '/api/pms/products/:sku',
    {
      config: { scope: 'pms', openapi: { problems: [428] } },
      schema: {
        tags,
        summary: 'Replace a product (job product.update); needs If-Match or expectedVersion',
        params: skuParams,
        headers: ifMatchHeaders,
        body: updateProductPayload
          .omit({ sku: true })
          .extend({ expectedVersion: versionSchema.optional() })
          .meta({
            example: {
              name: 'T-shirt red M',
              price: { amount: 2499, currency: 'EUR' },
              attributes: { color: 'red' },
              expectedVersion: 1,
            },
          }),
        response: { ...accepted, 200: productSchema },
      },
    },
    (request, reply) => {
      const version = expectedVersion(request.headers['if-match'], request.body.expectedVersion);
      if (version === undefined) {
        throw new HttpProblem(
          428,
          'precondition_required',
          'Send If-Match: "<version>" or expectedVersion in the body',
        );
      }
      return submitJob(deps, request, reply, productJobs.update, {
        ...request.body,
        sku: request.params.sku,
        expectedVersion: version,
      });
    },
  );

  app.delete(
    '/api/pms/products/:sku',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Archive a product (job product.archive); the row stays with status archived',
        params: skuParams,
        headers: ifMatchHeaders,
        response: { ...accepted, 200: productSchema },
      },
    },
    (request, reply) => submitJob(deps, request, reply, productJobs.archive, productRef(request)),
  );

  app.post(
    '/api/pms/products/:sku/publish',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Publish a product (job product.publish); failing rules end in publish_rules_failed',
        params: skuParams,
        headers: ifMatchHeaders,
        response: { ...accepted, 200: productSchema },
      },
    },
    (request, reply) => submitJob(deps, request, reply, productJobs.publish, productRef(request)),
  );

  app.get(
    '/api/pms/products',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'List products in sku order (keyset pagination)',
        querystring: z.object({
          status: z.enum(['draft', 'published', 'archived']).optional(),
          q: z.string().min(1).max(200).optional(),
          limit: z.coerce.number().int().min(1).max(200).default(50),
          cursor: cursors.product.schema.optional(),
        }),
        response: { 200: z.object({ items: z.array(productSchema), nextCursor: z.string().nullable() }) },
      },
    },
    (request) => deps.cache.products(request.query),
  );

  app.get(
    '/api/pms/products/:sku',
    {
      config: {
        scope: 'pms',
        openapi: {
          headers: { 200: { ETag: { description: 'The version: "<n>"', schema: { type: 'string' } } } },
        },
      },
      schema: {
        tags,
        summary: 'Read a product; its ETag is its version',
        params: skuParams,
        response: { 200: productSchema },
      },
    },
    async (request, reply) => {
      const product = await deps.cache.product(request.params.sku);
      if (!product) {
        return sendProblem(
          reply,
          request,
          problem(404, 'not_found', `Product ${request.params.sku} does not exist`),
        );
      }
      return reply.header('ETag', `"${product.version}"`).send(product);
    },
  );
}
