import type { Knex } from 'knex';
import { z } from 'zod';

/**
 * Event type filters: an exact type (`order.created`), a prefix wildcard (`inventory.*` matches
 * `inventory.adjusted` and `inventory.level.changed`), or `*` for everything. The feed, the live
 * stream and webhook endpoints share them; they know no event type in advance.
 */
export const typePatternSchema = z
  .string()
  .regex(
    /^(\*|[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*(\.\*)?)$/,
    'must be an event type (order.created), a prefix wildcard (inventory.*) or *',
  );

/** `types=inventory.*,order.created` as a query parameter. */
export const typeListQuerySchema = z
  .string()
  .max(2000)
  .transform((text) =>
    text
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean),
  )
  .pipe(z.array(typePatternSchema).max(50));

export function matchesType(patterns: readonly string[], type: string): boolean {
  return patterns.some(
    (p) => p === '*' || p === type || (p.endsWith('.*') && type.startsWith(p.slice(0, -1))),
  );
}

/** Adds `type` conditions for the patterns to a query (no patterns or `*`: no condition). */
export function whereTypeMatches(builder: Knex.QueryBuilder, patterns: readonly string[] | undefined): void {
  if (!patterns || patterns.length === 0 || patterns.includes('*')) return;
  const exact = patterns.filter((p) => !p.endsWith('.*'));
  // Patterns allow no LIKE metacharacters except `_`, which is escaped.
  const prefixes = patterns
    .filter((p) => p.endsWith('.*'))
    .map((p) => `${p.slice(0, -1).replaceAll('_', '\\_')}%`);
  builder.where((w) => {
    if (exact.length > 0) w.orWhereIn('type', exact);
    for (const prefix of prefixes) w.orWhere('type', 'like', prefix);
  });
}
