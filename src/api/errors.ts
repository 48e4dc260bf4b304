import type { FastifyError, FastifyInstance } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import FindMyWay from 'find-my-way';
import { type FieldError, HttpProblem, problem, sendProblem } from './problems.js';

const methods = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

/**
 * Every error leaves as `application/problem+json`: validation (every field), malformed JSON,
 * oversized bodies, unknown routes (404) and known routes with the wrong method (405 + Allow).
 * A 5xx is logged with its cause and answered without internals.
 */
export function registerErrorHandling(app: FastifyInstance): void {
  // A second router that only knows which paths exist, to tell 405 from 404.
  const knownRoutes = FindMyWay();
  app.addHook('onRoute', (route) => {
    const routeMethods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of routeMethods) {
      if (
        (methods as readonly string[]).includes(method) &&
        !knownRoutes.hasRoute(method as 'GET', route.url)
      ) {
        knownRoutes.on(method as 'GET', route.url, () => undefined);
      }
    }
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? '/';
    const allowed = methods.filter((m) => m !== request.method && knownRoutes.find(m, path) !== null);
    if (allowed.length > 0) {
      reply.header('Allow', allowed.join(', '));
      return sendProblem(
        reply,
        request,
        problem(
          405,
          'method_not_allowed',
          `${request.method} is not allowed on ${path}; use ${allowed.join(', ')}`,
        ),
      );
    }
    return sendProblem(reply, request, problem(404, 'not_found', `No route for ${request.method} ${path}`));
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof HttpProblem) {
      reply.headers(error.headers);
      return sendProblem(reply, request, problem(error.status, error.code, error.message, error.extra));
    }
    if (hasZodFastifySchemaValidationErrors(error)) {
      const where: string = error.validationContext ?? 'body';
      const errors: FieldError[] = error.validation.map((v) => ({
        in: where,
        path: v.instancePath.slice(1).replaceAll('/', '.'),
        message: v.message ?? 'is invalid',
      }));
      return sendProblem(
        reply,
        request,
        problem(400, 'validation_failed', `The ${where} has ${errors.length} invalid field(s)`, { errors }),
      );
    }
    switch (error.code) {
      case 'FST_ERR_CTP_INVALID_JSON_BODY':
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
        return sendProblem(reply, request, problem(400, 'malformed_json', error.message));
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return sendProblem(
          reply,
          request,
          problem(413, 'payload_too_large', 'The request body exceeds the size limit'),
        );
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
        return sendProblem(reply, request, problem(415, 'unsupported_media_type', error.message));
    }
    // A JSON syntax error from the body parser.
    if (error instanceof SyntaxError || (error.statusCode === 400 && /JSON/i.test(error.message))) {
      return sendProblem(
        reply,
        request,
        problem(400, 'malformed_json', 'The request body is not valid JSON'),
      );
    }
    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      return sendProblem(reply, request, problem(status, 'bad_request', error.message));
    }
    request.log.error({ err: error }, 'request failed');
    return sendProblem(
      reply,
      request,
      problem(
        status >= 500 && status < 600 ? status : 500,
        'internal_error',
        'Something went wrong on our side; the request id identifies it in our logs',
      ),
    );
  });
}
