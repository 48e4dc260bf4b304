import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import { registerAuth } from './auth.js';
import { registerBullBoard } from './bull-board.js';
import type { ApiDeps } from './deps.js';
import { registerDocs } from './docs.js';
import { problemServerOptions, registerErrorHandling } from './errors.js';
import { registerMetrics } from './metrics.js';
import { registerEventRoutes } from './routes/events.js';
import { registerHealthRoutes } from './routes/health.js';
import { registerImageRoutes } from './routes/images.js';
import { registerInventoryRoutes } from './routes/inventory.js';
import { registerJobRoutes } from './routes/jobs.js';
import { registerLocationRoutes } from './routes/locations.js';
import { registerProductRoutes } from './routes/products.js';
import { registerWebhookRoutes } from './routes/webhooks.js';

const requestIdPattern = /^[A-Za-z0-9._-]{1,128}$/;

/** The Fastify app of the web process: auth, validation, problem errors, routes, docs, Bull Board. */
export async function buildApp(deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    bodyLimit: deps.config.BODY_LIMIT_BYTES,
    // Keep a caller's X-Request-Id when it is sane, so one id follows a request into its job's logs.
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && requestIdPattern.test(given) ? given : randomUUID();
    },
    return503OnClosing: true,
    // Errors raised before a route runs (router, HTTP parser) are problems too.
    ...problemServerOptions,
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  // A synchronous hook: this runs on every request, the intake hot path included.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('X-Request-Id', request.id);
    done();
  });

  registerErrorHandling(app);
  registerAuth(app, deps.keys);
  await registerDocs(app, { public: deps.config.DOCS_PUBLIC });
  registerMetrics(app, deps.queues);
  registerHealthRoutes(app, deps);
  registerJobRoutes(app, deps);
  registerProductRoutes(app, deps);
  await registerImageRoutes(app, deps);
  await registerEventRoutes(app, deps);
  registerWebhookRoutes(app, deps);
  registerLocationRoutes(app, deps);
  registerInventoryRoutes(app, deps);
  await registerBullBoard(app, deps.queues);
  return app;
}
