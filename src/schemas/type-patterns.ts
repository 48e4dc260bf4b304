import { distance } from 'fastest-levenshtein';
import { z } from 'zod';
import { eventTypeNames } from './event-types.js';

/** The `code` of a pattern that matches no declared event type (422 at the API). */
export const unknownEventType = 'unknown_event_type';

/**
 * Event type filters: an exact type (`stock.moved`), a prefix wildcard (`product.*` matches
 * `product.created` and `product.published`), or `*` for everything. The feed, the live stream
 * and webhook endpoints share them, and each pattern must match at least one type of the
 * catalogue: a filter that can never match is a typo, refused with the closest known types.
 */
export const typePatternSchema = z
  .string()
  .regex(
    /^(\*|[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*(\.\*)?)$/,
    'must be an event type (stock.moved), a prefix wildcard (product.*) or *',
  )
  .superRefine((pattern, ctx) => {
    if (eventTypeNames.some((name) => matchesType([pattern], name))) return;
    const suggestions = closestTypes(pattern);
    ctx.addIssue({
      code: 'custom',
      message: `matches no known event type; did you mean ${suggestions.join(', ')}? (GET /api/pms/events/types lists them)`,
      params: { code: unknownEventType, suggestions },
    });
  });

/** The suggestions when every issue is an unknown event type (else undefined: another mistake). */
export function unknownTypeSuggestions(issues: readonly z.core.$ZodIssue[]): string[] | undefined {
  const params = issues.map((i) => (i.code === 'custom' ? i.params : undefined));
  if (params.length === 0 || !params.every((p) => p?.code === unknownEventType)) return undefined;
  return [...new Set(params.flatMap((p) => (p?.suggestions as string[] | undefined) ?? []))];
}

/** Up to `count` known types and wildcards nearest to a pattern: same namespace first, then edit distance. */
export function closestTypes(pattern: string, count = 3): string[] {
  const namespaces = [...new Set(eventTypeNames.map((name) => name.split('.')[0]!))];
  const candidates = [...eventTypeNames, ...namespaces.map((ns) => `${ns}.*`)];
  const head = pattern.split('.')[0]!.toLowerCase();
  const score = (candidate: string) => {
    const ns = candidate.split('.')[0]!;
    const related = ns.startsWith(head) || head.startsWith(ns) ? 0 : 1;
    return related * 1000 + distance(pattern.toLowerCase(), candidate);
  };
  return candidates
    .map((candidate) => ({ candidate, score: score(candidate) }))
    .sort((a, b) => a.score - b.score || a.candidate.localeCompare(b.candidate))
    .slice(0, count)
    .map((c) => c.candidate);
}

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
