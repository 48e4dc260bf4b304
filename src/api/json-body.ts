import type { FastifyInstance } from 'fastify';
import secureJson from 'secure-json-parse';
import { HttpProblem } from '../errors/http-problem.js';

/**
 * Input that can never be stored is refused where it enters, before anything is enqueued:
 *
 * - JSON nested deeper than `maxDepth`: a linear scan of the raw text counts brackets outside
 *   strings before the text is parsed, so no recursion (ours, zod's, JSON.stringify's, Postgres's
 *   jsonb) ever sees 5,000 levels of `attributes`. A scan, not a streaming parser: one pass over
 *   at most BODY_LIMIT_BYTES of text, no dependency, and JSON.parse stays the parser.
 * - NUL characters and unpaired UTF-16 surrogates in any string, object keys included: Postgres
 *   text and jsonb cannot hold them, so a job carrying one could only fail (5 times) later.
 * - `__proto__` / `constructor.prototype` keys (secure-json-parse, as Fastify's own parser).
 */

const unstorableMessage = 'must not contain NUL characters or unpaired UTF-16 surrogates';

/** True when `text` cannot be stored as Postgres text: a NUL, or a lone surrogate. */
export const isUnstorableString = (text: string) => text.includes('\u0000') || loneSurrogate.test(text);

// Code units, not code points (no `u` flag): a high surrogate without a low one after it, or a low
// one without a high one before it.
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Whether the JSON text nests objects/arrays deeper than `max` (brackets inside strings do not count). */
export function nestsDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

/** The dotted path of the first string (or key) in `value` that cannot be stored, if any. */
export function findUnstorableString(value: unknown, path: string[] = []): string | undefined {
  if (typeof value === 'string') return isUnstorableString(value) ? path.join('.') || '(value)' : undefined;
  if (value === null || typeof value !== 'object') return undefined;
  const entries = Array.isArray(value) ? value.entries() : Object.entries(value);
  for (const [key, item] of entries) {
    const here = [...path, String(key)];
    if (typeof key === 'string' && isUnstorableString(key)) return here.join('.');
    const found = findUnstorableString(item, here);
    if (found !== undefined) return found;
  }
  return undefined;
}

export const unstorableProblem = (where: string, path: string) =>
  new HttpProblem(400, 'validation_failed', `The ${where} has 1 invalid field(s)`, {
    errors: [{ in: where, path, message: unstorableMessage }],
  });

/**
 * Parses a JSON body the one way every route does (the JSON parser below, and routes that must
 * keep the raw text, such as signed inbound webhooks): depth bounded before parsing, prototype
 * keys refused, unstorable strings refused. Throws the problem to answer.
 */
export function parseJsonBody(text: string, maxDepth: number): unknown {
  if (text.length === 0) {
    throw new HttpProblem(400, 'malformed_json', 'The request body is empty; send a JSON document');
  }
  if (nestsDeeperThan(text, maxDepth)) {
    throw new HttpProblem(400, 'json_too_deep', `The JSON body nests deeper than ${maxDepth} levels`, {
      details: { maxDepth },
    });
  }
  let parsed: unknown;
  try {
    parsed = secureJson.parse(text, null, { protoAction: 'error', constructorAction: 'error' });
  } catch {
    throw new HttpProblem(400, 'malformed_json', 'The request body is not valid JSON');
  }
  const bad = findUnstorableString(parsed);
  if (bad !== undefined) throw unstorableProblem('body', bad);
  return parsed;
}

/**
 * Replaces Fastify's JSON body parser with one that bounds depth before parsing and refuses
 * unstorable strings; also checks the query string and path parameters of every request.
 */
export function registerJsonBody(app: FastifyInstance, options: { maxDepth: number }): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    try {
      done(null, parseJsonBody(body as string, options.maxDepth));
    } catch (error) {
      done(error as Error);
    }
  });

  app.addHook('preValidation', async (request) => {
    for (const where of ['querystring', 'params'] as const) {
      const values = where === 'querystring' ? request.query : request.params;
      const bad = findUnstorableString(values);
      if (bad !== undefined) throw unstorableProblem(where, bad);
    }
  });
}
