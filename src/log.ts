import { type DestinationStream, pino } from 'pino';
import type { Config } from './config.js';

export type Logger = pino.Logger;

/**
 * What never reaches a log line: credentials in request and response headers (API keys travel
 * as `Authorization`), webhook signatures, and fields named like secrets at any of the depths
 * our log objects use.
 */
const redactedPaths = [
  ...['req', 'request', 'res', 'reply', 'response'].flatMap((at) =>
    ['authorization', 'cookie', 'set-cookie', 'webhook-signature', 'x-api-key'].map(
      (header) => `${at}.headers["${header}"]`,
    ),
  ),
  ...['authorization', 'cookie', 'set-cookie', 'webhook-signature', 'x-api-key'].map(
    (header) => `headers["${header}"]`,
  ),
  ...['password', 'secret', 'secrets', 'apiKey', 'api_key', 'key', 'token', 'previous_secret'].flatMap(
    (field) => [field, `*.${field}`],
  ),
];

/**
 * What a database error carries beside its message that can hold row data or bound values:
 * Postgres's `detail` ("Failing row contains (…)": sealed secrets, URLs with tokens, personal
 * data), `where` and `internalQuery` (the statement context, literals included), `hint`, and
 * the values a driver or query builder may attach. The code, constraint, table and column stay.
 */
const unloggedErrorFields = ['detail', 'where', 'hint', 'internalQuery', 'parameters', 'bindings', 'values'];

const isSerializedError = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && 'message' in value && 'stack' in value;

function scrubError(serialized: Record<string, unknown>, depth = 0): Record<string, unknown> {
  for (const field of unloggedErrorFields) delete serialized[field];
  if (depth >= 5) return serialized;
  for (const value of Object.values(serialized)) {
    for (const nested of Array.isArray(value) ? value : [value]) {
      if (isSerializedError(nested)) scrubError(nested, depth + 1);
    }
  }
  return serialized;
}

/** pino's error serializer (message and stack with their causes), minus what a database error must not log. */
function serializeError(error: unknown): unknown {
  const serialized = pino.stdSerializers.err(error as Error);
  return isSerializedError(serialized) ? scrubError(serialized) : serialized;
}

/** The pino root logger; Fastify and every worker take children of it. */
export function createLogger(
  config: Pick<Config, 'LOG_LEVEL' | 'LOG_PRETTY'>,
  name = 'stockflow',
  destination?: DestinationStream,
): Logger {
  const options: pino.LoggerOptions = {
    name,
    level: config.LOG_LEVEL,
    redact: { paths: redactedPaths, censor: '[redacted]' },
    // Every error is logged through one serializer, whichever key carries it.
    serializers: { err: serializeError, error: serializeError },
    transport:
      config.LOG_PRETTY && !destination ? { target: 'pino-pretty', options: { colorize: true } } : undefined,
  };
  return destination ? pino(options, destination) : pino(options);
}

/** A URL as it may be printed: its password masked. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable url)';
  }
}
