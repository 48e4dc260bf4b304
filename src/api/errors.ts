import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type {
  FastifyError,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  FastifyServerOptions,
} from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import FindMyWay from 'find-my-way';
import { isServiceUnavailable } from '../db/knex.js';
import { type FieldError, HttpProblem, type Problem } from '../errors/http-problem.js';
import { unknownEventType } from '../schemas/type-patterns.js';
import { problem, sendProblem } from './problems.js';

const methods = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

/**
 * The errors Fastify, its router and its plugins raise, by their `code`, as the problem each one
 * answers. One table: a plugin that adds a code (or a hook that throws one) gets a row here; an
 * error a route means to answer is an `HttpProblem` instead. Anything 4xx that is not listed
 * still leaves as a problem (`bad_request`), 5xx as `internal_error` without details.
 */
const frameworkProblems: Record<string, { status: number; code: string; detail?: string }> = {
  // Router (answered through the `frameworkErrors` option: no route has matched yet).
  FST_ERR_BAD_URL: { status: 400, code: 'malformed_url', detail: 'The URL has malformed percent-encoding' },
  FST_ERR_MAX_PARAM_LENGTH: { status: 414, code: 'uri_too_long', detail: 'A path segment is too long' },
  // Content-type parsers.
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'unsupported_media_type' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: {
    status: 400,
    code: 'invalid_content_length',
    detail: 'The request body size does not match its Content-Length',
  },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'malformed_json' },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'malformed_json' },
  FST_ERR_CTP_BODY_TOO_LARGE: {
    status: 413,
    code: 'payload_too_large',
    detail: 'The request body exceeds the size limit',
  },
  // @fastify/multipart.
  FST_INVALID_MULTIPART_CONTENT_TYPE: {
    status: 415,
    code: 'unsupported_media_type',
    detail: 'This route takes multipart/form-data',
  },
  FST_INVALID_JSON_FIELD_ERROR: { status: 400, code: 'malformed_json' },
  FST_PARTS_LIMIT: { status: 413, code: 'payload_too_large', detail: 'Too many parts' },
  FST_FILES_LIMIT: { status: 413, code: 'payload_too_large', detail: 'Too many files' },
  FST_FIELDS_LIMIT: { status: 413, code: 'payload_too_large', detail: 'Too many fields' },
  FST_REQ_FILE_TOO_LARGE: {
    status: 413,
    code: 'payload_too_large',
    detail: 'The file exceeds the size limit',
  },
  FST_PROTO_VIOLATION: {
    status: 400,
    code: 'forbidden_field_name',
    detail: 'A field name is a prototype property',
  },
  FST_MP_PREMATURE_CLOSE: {
    status: 400,
    code: 'incomplete_body',
    detail: 'The request ended before its body was complete',
  },
};

/** Errors of Node's HTTP parser (no request exists yet), by `code`. */
const parserProblems: Record<string, { status: number; code: string; detail: string }> = {
  HPE_HEADER_OVERFLOW: {
    status: 431,
    code: 'headers_too_large',
    detail: 'The request line and headers exceed the size limit',
  },
  ERR_HTTP_REQUEST_TIMEOUT: {
    status: 408,
    code: 'request_timeout',
    detail: 'The request was not received in time',
  },
};
const malformedRequest = {
  status: 400,
  code: 'malformed_request',
  detail: 'The request is not valid HTTP/1.1',
};

/** The problem an error answers with; `undefined` for one that is ours to log (a 5xx). */
export function problemForError(error: FastifyError): Problem | undefined {
  if (error instanceof HttpProblem) return problem(error.status, error.code, error.message, error.extra);
  if (hasZodFastifySchemaValidationErrors(error)) return validationProblem(error);
  const known = error.code ? frameworkProblems[error.code] : undefined;
  if (known) return problem(known.status, known.code, known.detail ?? error.message);
  // A JSON syntax error from the body parser (also secure-json-parse's prototype refusals).
  if (error instanceof SyntaxError || (error.statusCode === 400 && /JSON/i.test(error.message))) {
    return problem(400, 'malformed_json', 'The request body is not valid JSON');
  }
  const status = error.statusCode ?? 500;
  if (status >= 400 && status < 500) return problem(status, 'bad_request', error.message);
  return undefined;
}

type ValidationError = FastifyError & Required<Pick<FastifyError, 'validation'>>;

function validationProblem(error: ValidationError): Problem {
  const where: string = error.validationContext ?? 'body';
  const issues = error.validation.map((v) => ({
    field: {
      in: where,
      path: v.instancePath.slice(1).replaceAll('/', '.'),
      message: v.message ?? 'is invalid',
    } satisfies FieldError,
    // A zod custom issue's own params (see src/schemas/type-patterns.ts).
    params: (v.params as { params?: { code?: string; suggestions?: string[] } }).params,
  }));
  const errors = issues.map((i) => i.field);
  // Every refusal is an unknown event type: the input is well-formed, the name is not ours.
  if (issues.every((i) => i.params?.code === unknownEventType)) {
    const suggestions = [...new Set(issues.flatMap((i) => i.params?.suggestions ?? []))];
    return problem(
      422,
      unknownEventType,
      `${errors.map((e) => `${e.path || where}: ${e.message}`).join('; ')}`,
      { errors, suggestions },
    );
  }
  return problem(400, 'validation_failed', `The ${where} has ${errors.length} invalid field(s)`, { errors });
}

function internalError(request: FastifyRequest, reply: FastifyReply, error: FastifyError) {
  if (isServiceUnavailable(error)) {
    request.log.warn({ err: error }, 'a backing service is unavailable: 503');
    reply.header('Retry-After', '5');
    return sendProblem(
      reply,
      request,
      problem(503, 'service_unavailable', 'A backing service is unavailable; repeat the request later'),
    );
  }
  request.log.error({ err: error }, 'request failed');
  const status = error.statusCode ?? 500;
  return sendProblem(
    reply,
    request,
    problem(
      status >= 500 && status < 600 ? status : 500,
      'internal_error',
      'Something went wrong on our side; the request id identifies it in our logs',
    ),
  );
}

/**
 * Fastify options that turn the errors raised before any route runs into problems: the router's
 * (malformed percent-encoding, an over-long path segment, async constraints) and Node's HTTP
 * parser's (headers too large, malformed requests, timeouts), which Fastify otherwise answers
 * with its own JSON.
 */
export const problemServerOptions = {
  frameworkErrors(error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
    // No onRequest hook has run for this request.
    reply.header('X-Request-Id', request.id);
    const body = problemForError(error);
    return body ? sendProblem(reply, request, body) : internalError(request, reply, error);
  },
  clientErrorHandler(error: Error & { code?: string }, socket: Socket) {
    // A reset connection has no one left to answer.
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    const known = (error.code && parserProblems[error.code]) || malformedRequest;
    const requestId = randomUUID();
    const body = JSON.stringify({ ...problem(known.status, known.code, known.detail), requestId });
    if (socket.writable) {
      socket.write(
        `HTTP/1.1 ${known.status} ${STATUS_CODES[known.status]}\r\n` +
          'Content-Type: application/problem+json\r\n' +
          `Content-Length: ${Buffer.byteLength(body)}\r\n` +
          `X-Request-Id: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
      );
    }
    socket.destroy(error);
  },
} satisfies Pick<FastifyServerOptions, 'frameworkErrors' | 'clientErrorHandler'>;

/**
 * Every error leaves as `application/problem+json`: validation (every field), malformed JSON,
 * oversized bodies, unknown routes (404) and known routes with the wrong method (405 + Allow),
 * and every framework error above. A 5xx is logged with its cause and answered without internals.
 */
export function registerErrorHandling(app: FastifyInstance): void {
  // A JSON API: a text/plain body would reach the validator as a string (400 about the shape);
  // refusing its media type (415) says what is wrong.
  app.removeContentTypeParser('text/plain');
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
    if (error instanceof HttpProblem) reply.headers(error.headers);
    const body = problemForError(error);
    return body ? sendProblem(reply, request, body) : internalError(request, reply, error);
  });
}
