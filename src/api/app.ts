import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import { registerAuth } from './auth.js';
import { registerBullBoard } from './bull-board.js';
import type { ApiDeps } from './deps.js';
import { registerDocs } from './docs.js';
import { problemServerOptions, registerErrorHandling } from './errors.js';
import { registerJsonBody } from './json-body.js';
import { registerMetrics } from './metrics.js';
import { registerRateLimit } from './rate-limits.js';
import { registerCommitPositions } from './replica-reads.js';
import { registerEventRoutes } from './routes/events.js';
import { registerHealthRoutes } from './routes/health.js';
import { registerImageRoutes } from './routes/images.js';
import { registerInboundRoutes } from './routes/inbound.js';
import { registerInventoryRoutes } from './routes/inventory.js';
import { registerJobRoutes } from './routes/jobs.js';
import { registerLocationRoutes } from './routes/locations.js';
import { registerOpsRoutes } from './routes/ops.js';
import { registerOpsPage } from './routes/ops-page.js';
import { registerOrderRoutes } from './routes/orders.js';
import { registerProductRoutes } from './routes/products.js';
import { registerReorderingRoutes } from './routes/reordering.js';
import { registerReportRoutes } from './routes/reports.js';
import { registerSupplierRoutes } from './routes/suppliers.js';
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
    // A slow client cannot hold a socket: the request must arrive in time, idle keep-alives close.
    requestTimeout: deps.config.HTTP_REQUEST_TIMEOUT_MS,
    keepAliveTimeout: deps.config.HTTP_KEEP_ALIVE_TIMEOUT_MS,
    http: {
      headersTimeout: deps.config.HTTP_HEADERS_TIMEOUT_MS,
      // How often Node looks for connections past those timeouts (its default is 30 s).
      connectionsCheckingInterval: Math.min(1000, deps.config.HTTP_HEADERS_TIMEOUT_MS),
    },
    // The client IP that auth-failure limits count: the address `hops` proxies in front of us saw.
    trustProxy: (_address: string, hop: number) => hop < deps.config.TRUST_PROXY_HOPS,
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
  registerJsonBody(app, { maxDepth: deps.config.JSON_MAX_DEPTH });
  registerAuth(app, deps.keys, { authFailures: deps.limits.rates.authFailures });
  registerRateLimit(app, deps.limits.rates, deps.config.RATE_LIMIT_PER_SECOND);
  registerCommitPositions(app, deps);
  await registerDocs(app, { public: deps.config.DOCS_PUBLIC });
  registerMetrics(app, deps);
  registerHealthRoutes(app, deps);
  registerJobRoutes(app, deps);
  registerProductRoutes(app, deps);
  await registerImageRoutes(app, deps);
  await registerEventRoutes(app, deps);
  registerWebhookRoutes(app, deps);
  registerLocationRoutes(app, deps);
  registerInventoryRoutes(app, deps);
  registerSupplierRoutes(app, deps);
  registerReorderingRoutes(app, deps);
  registerOrderRoutes(app, deps);
  await registerInboundRoutes(app, deps);
  registerOpsRoutes(app, deps);
  registerReportRoutes(app, deps);
  registerOpsPage(app, deps);
  await registerBullBoard(app, deps.queues, deps.config);
  return app;
}
