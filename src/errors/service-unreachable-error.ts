import { redactUrl } from '../log.js';

/** A backing service could not be reached at start: entry points print this, without a stack trace. */
export class ServiceUnreachableError extends Error {
  constructor(
    readonly service: 'PostgreSQL' | 'Redis',
    /** A URL (its password is redacted here) or a description such as the sentinels asked. */
    where: string,
    cause: unknown,
  ) {
    super(
      `${service} is not reachable at ${/^[a-z]+:\/\//.test(where) ? redactUrl(where) : where} (${describe(cause)}).\n` +
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
