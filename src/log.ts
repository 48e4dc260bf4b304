import { pino } from 'pino';
import type { Config } from './config.js';

export type Logger = pino.Logger;

/** The pino root logger; Fastify and every worker take children of it. */
export function createLogger(config: Pick<Config, 'LOG_LEVEL' | 'LOG_PRETTY'>, name = 'stockflow'): Logger {
  return pino({
    name,
    level: config.LOG_LEVEL,
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', '*.password', '*.secret', '*.apiKey'],
      censor: '[redacted]',
    },
    transport: config.LOG_PRETTY ? { target: 'pino-pretty', options: { colorize: true } } : undefined,
  });
}
