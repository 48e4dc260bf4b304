import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { listLocations } from '../../domain/locations.js';
import { createLocationPayload, inventoryJobs, updateLocationPayload } from '../../queues/inventory.js';
import { locationCodeSchema, locationSchema } from '../../schemas/locations.js';
import type { ApiDeps } from '../deps.js';
import { lsnHeaders, lsnQuery, readMayLag } from '../replica-reads.js';
import { jobHandleSchema, submitJob } from '../submit-job.js';

export function registerLocationRoutes(root: FastifyInstance, deps: ApiDeps): void {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const tags = ['locations'];

  app.post(
    '/api/pms/locations',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Create a location (job location.create; a taken code fails with location_taken)',
        body: createLocationPayload.meta({ example: { code: 'warehouse', name: 'Warehouse', priority: 10 } }),
        response: { 202: jobHandleSchema, 201: locationSchema },
      },
    },
    (request, reply) =>
      submitJob(deps, request, reply, inventoryJobs.createLocation, request.body, { successStatus: 201 }),
  );

  app.put(
    '/api/pms/locations/:code',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Replace a location’s name, priority and active flag (job location.update)',
        params: z.object({ code: locationCodeSchema }),
        body: updateLocationPayload
          .omit({ code: true })
          .meta({ example: { name: 'Warehouse', priority: 10, active: true } }),
        response: { 202: jobHandleSchema, 200: locationSchema },
      },
    },
    (request, reply) =>
      submitJob(deps, request, reply, inventoryJobs.updateLocation, {
        ...request.body,
        code: request.params.code,
      }),
  );

  app.get(
    '/api/pms/locations',
    {
      config: { scope: 'pms' },
      schema: {
        tags,
        summary: 'Every location, in allocation order (priority, then code)',
        querystring: z.object(lsnQuery),
        headers: lsnHeaders,
        response: { 200: z.object({ items: z.array(locationSchema) }) },
      },
    },
    (request, reply) => readMayLag(deps, request, reply, async (db) => ({ items: await listLocations(db) })),
  );
}
