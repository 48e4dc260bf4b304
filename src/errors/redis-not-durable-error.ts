/** The queue Redis can lose accepted jobs and REDIS_DURABILITY_CHECK is `refuse`: the process does not start. */
export class RedisNotDurableError extends Error {
  constructor(problems: string[]) {
    super(
      `Redis can lose accepted jobs: ${problems.join('; ')}.\n` +
        'Run it with maxmemory-policy noeviction and appendonly yes (docs/reliability.md), or set ' +
        'REDIS_DURABILITY_CHECK=alert to start anyway with a critical alert.',
    );
    this.name = 'RedisNotDurableError';
  }
}
