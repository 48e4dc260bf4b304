import { isPgError, pgErrorCodes } from './db/knex.js';
import { ConfigError } from './errors/config-error.js';
import { DatabaseMissingError } from './errors/database-missing-error.js';
import { RedisNotDurableError } from './errors/redis-not-durable-error.js';
import { ServiceUnreachableError } from './errors/service-unreachable-error.js';

/**
 * Runs an entry point. Startup problems a person can fix (bad config, a service that is down)
 * are printed as one clear message without a stack trace, and the process exits 1.
 */
export function runEntry(main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    if (
      error instanceof ConfigError ||
      error instanceof ServiceUnreachableError ||
      error instanceof DatabaseMissingError ||
      error instanceof RedisNotDurableError
    ) {
      process.stderr.write(`stockflow: ${error.message}\n`);
    } else if (String((error as { code?: unknown } | null)?.code).startsWith('ERR_PARSE_ARGS_')) {
      // node:util parseArgs: an unknown option or argument is a usage mistake, not a crash.
      process.stderr.write(`stockflow: ${(error as Error).message}\n`);
      process.exit(2);
    } else if (isPgError(error, pgErrorCodes.undefinedTable)) {
      // pg's message ends with `relation "api_keys" does not exist`.
      const relation =
        /relation "[^"]+" does not exist/.exec((error as Error).message)?.[0] ?? 'a table is missing';
      process.stderr.write(
        `stockflow: the database has no Stockflow tables yet (${relation}); apply the migrations with \`npm run migrate\`\n`,
      );
    } else {
      process.stderr.write(
        `stockflow: failed to start: ${error instanceof Error ? error.stack : String(error)}\n`,
      );
    }
    process.exit(1);
  });
}

/**
 * Calls `stop` once on the first SIGTERM or SIGINT, then exits with its code. A second signal
 * while stopping exits at once with 1 (an operator's second Ctrl-C, a supervisor that gave up):
 * active jobs are then taken over by another worker once their locks expire.
 */
export function onShutdownSignal(stop: (signal: string) => Promise<number>): void {
  let stopping = false;
  const handle = (signal: NodeJS.Signals) => {
    if (stopping) {
      process.stderr.write(`stockflow: ${signal} again while stopping: exiting now\n`);
      process.exit(1);
    }
    stopping = true;
    stop(signal).then(
      (code) => process.exit(code),
      (error: unknown) => {
        process.stderr.write(`stockflow: shutdown failed: ${String(error)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handle);
  process.on('SIGINT', handle);
}

/** Resolves true when `closing` settles within `ms`, false when the bound runs out first. */
export async function closeWithin(closing: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const closed = closing.then(() => true);
  // Once the bound has run out nobody awaits it: a later rejection must not go unhandled.
  closed.catch(() => undefined);
  const done = await Promise.race([closed, timedOut]);
  clearTimeout(timer);
  return done;
}
