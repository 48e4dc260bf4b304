import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import {
  createSupplier,
  getSupplierRow,
  listSuppliers,
  toSupplier,
  updateSupplier,
} from '../../domain/suppliers.js';
import { HttpProblem } from '../../errors/http-problem.js';
import { refuseUrl } from '../../outbound/address-guard.js';
import { addFollowUps } from '../../queues/follow-ups.js';
import { versionSchema } from '../../schemas/products.js';
import { supplierCodeSchema, supplierFields, supplierSchema } from '../../schemas/suppliers.js';
import { allows, principalOf } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import { writeDirectly } from '../direct-write.js';
import { problem, sendProblem } from '../problems.js';
import { queueNamedJobs } from '../submit-job.js';

const apiKey = z.string().min(8, 'must be at least 8 characters').max(500);

const createBody = z.object({ code: supplierCodeSchema, ...supplierFields, apiKey }).meta({
  examples: [
    {
      code: 'acme',
      name: 'ACME Textiles',
      apiUrl: 'https://api.acme.example/purchase-orders',
      apiKey: 'acme-live-3f9d2c1b',
      leadTimeDays: 5,
      minOrderQuantity: 10,
      orderMultiple: 6,
    },
  ],
});
const updateBody = z
  .object({
    ...supplierFields,
    apiUrl: supplierFields.apiUrl.optional(),
    apiKey: apiKey.optional(),
    expectedVersion: versionSchema.optional(),
  })
  .meta({
    examples: [
      {
        name: 'ACME Textiles',
        leadTimeDays: 4,
        minOrderQuantity: 12,
        orderMultiple: 6,
        active: true,
        expectedVersion: 1,
      },
      {
        name: 'ACME Textiles',
        apiUrl: 'https://orders.acme.example/v2/purchase-orders',
        apiKey: 'acme-live-8e41a7d0',
        leadTimeDays: 4,
      },
    ],
  });
const codeParams = z.object({ code: supplierCodeSchema });

/**
 * Suppliers are settings written here, in one transaction with their event, rather than as jobs:
 * a job's payload sits in Redis, and the api key must never be stored unsealed.
 *
 * Scopes: a supplier's credentials (its apiUrl, where the worker sends its api key, and the key)
 * are the shop's, not the PMS's. Registering a supplier needs an admin key; a pms key may read
 * suppliers (never the key; the apiUrl as origin and path) and change the other settings, and
 * gets `403 forbidden` for an apiUrl or apiKey. A new apiUrl origin without the api key in the
 * same request is `422 api_key_required`, whoever asks.
 */
export function registerSupplierRoutes(root: FastifyInstance, deps: ApiDeps): void {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const tags = ['reordering'];

  const checkUrl = (url: string) => {
    const reason = refuseUrl(url, deps.config.SUPPLIER_ALLOW_PRIVATE_TARGETS);
    if (reason) {
      throw new HttpProblem(422, 'unsafe_supplier_url', `The apiUrl ${reason}`, {
        errors: [{ in: 'body', path: 'apiUrl', message: reason }],
      });
    }
  };

  // Bound to the supplier's row: a sealed key copied to another supplier does not open.
  const seal = (code: string, key: string) =>
    deps.secrets.seal(key, { column: 'suppliers.api_key', row: code });

  const isAdmin = (request: FastifyRequest) => allows(principalOf(request).scopes, 'admin');

  app.post(
    '/api/pms/suppliers',
    {
      config: { scope: 'admin' },
      schema: {
        tags,
        summary: 'Register a supplier (admin key); its apiKey is sealed at rest and never returned',
        body: createBody,
        response: { 201: supplierSchema },
      },
    },
    async (request, reply) => {
      checkUrl(request.body.apiUrl);
      const { apiKey: key, ...rest } = request.body;
      const row = await writeDirectly(deps, request, (trx) =>
        createSupplier(trx, { ...rest, sealedApiKey: seal(rest.code, key) }),
      );
      return reply
        .code(201)
        .header('Location', `/api/pms/suppliers/${row.code}`)
        .send(toSupplier(row, { fullUrl: true }));
    },
  );

  app.put(
    '/api/pms/suppliers/:code',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary:
          "Replace a supplier's settings; apiUrl and apiKey only when given, and only with an admin key; its rules are checked again",
        params: codeParams,
        body: updateBody,
        response: { 200: supplierSchema },
      },
    },
    async (request) => {
      const admin = isAdmin(request);
      if (request.body.apiKey !== undefined && !admin) {
        throw new HttpProblem(403, 'forbidden', "Changing a supplier's apiKey needs an admin key", {
          details: { supplier: request.params.code, scope: 'admin', fields: ['apiKey'] },
        });
      }
      // A pms key's apiUrl is refused by updateSupplier unless it is the stored one: nothing to check.
      if (request.body.apiUrl !== undefined && admin) checkUrl(request.body.apiUrl);
      const { apiKey: key, ...rest } = request.body;
      // Its rules are checked again, queued before the change commits: while Redis is away the
      // change is refused (503), never saved without its checks.
      const row = await queueNamedJobs(deps, request, 'send the same request again', () =>
        writeDirectly(deps, request, async (trx) => {
          const updated = await updateSupplier(trx, {
            ...rest,
            code: request.params.code,
            sealedApiKey: key !== undefined ? seal(request.params.code, key) : undefined,
            mayChangeCredentials: admin,
          });
          const { code, version } = updated.row;
          await addFollowUps(
            deps,
            updated.ruleIds.map((ruleId) => ({
              kind: 'check',
              payload: { ruleId },
              key: `supplier-${code}-v${version}`,
            })),
          );
          return updated.row;
        }),
      );
      const supplier = toSupplier(row, { fullUrl: admin });
      return supplier;
    },
  );

  app.get(
    '/api/pms/suppliers',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Every supplier, by code (apiUrl as origin and path unless the key is an admin key)',
        response: { 200: z.object({ items: z.array(supplierSchema) }) },
      },
    },
    async (request) => ({ items: await listSuppliers(deps.db, { fullUrl: isAdmin(request) }) }),
  );

  app.get(
    '/api/pms/suppliers/:code',
    {
      config: { scope: 'pms' },
      schema: { tags, summary: 'Read a supplier', params: codeParams, response: { 200: supplierSchema } },
    },
    async (request, reply) => {
      const row = await getSupplierRow(deps.db, request.params.code);
      if (!row) {
        return sendProblem(
          reply,
          request,
          problem(404, 'not_found', `Supplier ${request.params.code} does not exist`),
        );
      }
      return toSupplier(row, { fullUrl: isAdmin(request) });
    },
  );
}
