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
    transport:
      config.LOG_PRETTY && !destination ? { target: 'pino-pretty', options: { colorize: true } } : undefined,
  };
  return destination ? pino(options, destination) : pino(options);
}
