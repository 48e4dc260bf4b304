import { redactUrl } from '../log.js';

/** A backing service could not be reached at start: entry points print this, without a stack trace. */
export class ServiceUnreachableError extends Error {
  constructor(
    readonly service: 'PostgreSQL' | 'Redis',
    readonly url: string,
    cause: unknown,
  ) {
    super(
      `${service} is not reachable at ${redactUrl(url)} (${describe(cause)}).\n` +
        `Start it with \`bash scripts/services.sh\`, or point ${service === 'PostgreSQL' ? 'DATABASE_URL' : 'REDIS_URL'} at a running server.`,
    );
    this.name = 'ServiceUnreachableError';
  }
}

function describe(cause: unknown): string {
  if (cause instanceof AggregateError && cause.errors.length) return describe(cause.errors[0]);
  if (cause instanceof Error) return (cause as { code?: string }).code ?? cause.message;
  return String(cause);
}
