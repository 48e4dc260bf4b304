import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { jsonSchemaTransform } from 'fastify-type-provider-zod';
import { assignScope } from './auth.js';

/** OpenAPI 3 generated from the routes' zod schemas: JSON at /docs/json, Swagger UI at /docs. */
/** The JSON and Swagger UI need a valid key (any scope) unless `public`. */
export async function registerDocs(app: FastifyInstance, options: { public: boolean }): Promise<void> {
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
      components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer' } } },
      security: [{ apiKey: [] }],
    },
    transform: jsonSchemaTransform,
  });
  await app.register(async (docs) => {
    assignScope(docs, options.public ? 'public' : 'key');
    await docs.register(swaggerUi, { routePrefix: '/docs' });
  });
}
