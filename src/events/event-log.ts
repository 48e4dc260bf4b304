import type { Knex } from 'knex';
import { EventsPrunedError } from '../errors/events-pruned-error.js';
import { PositionAheadError } from '../errors/position-ahead-error.js';
import type { LogEvent } from '../schemas/events.js';
import { lastDrawnSeq } from './horizon.js';

/** Adds `type` conditions for the patterns (src/schemas/type-patterns.ts) to a query (no patterns or `*`: no condition). */
function whereTypeMatches(builder: Knex.QueryBuilder, patterns: readonly string[] | undefined): void {
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

interface EventRow {
  seq: number;
  id: string;
  type: string;
  aggregate_type: string;
  aggregate_id: string;
  data: Record<string, unknown>;
  job_id: string | null;
  actor: string | null;
  occurred_at: Date;
}

const eventColumns: string[] = [
  'seq',
  'id',
  'type',
  'aggregate_type',
  'aggregate_id',
  'data',
  'job_id',
  'actor',
  'occurred_at',
];

export function toLogEvent(row: EventRow): LogEvent {
  return {
    seq: row.seq,
    id: row.id,
    type: row.type,
    aggregate: { type: row.aggregate_type, id: row.aggregate_id },
    data: row.data,
    jobId: row.job_id,
    actor: row.actor,
    occurredAt: row.occurred_at.toISOString(),
  };
}

export interface EventPage {
  items: LogEvent[];
  /** Pass as `after` for the next page. Past filtered-out events too, so a filter never re-scans them. */
  nextAfter: number;
}

/**
 * Events with `after < seq <= horizon`, in seq order. `horizon` must be a proven stable horizon
 * (src/events/horizon.ts): below it the log can no longer change, so paging by seq skips nothing.
 */
export async function readEventPage(
  db: Knex,
  query: { after: number; limit: number; horizon: number; types?: readonly string[] },
): Promise<EventPage> {
  if (query.after >= query.horizon) return { items: [], nextAfter: query.after };
  // A filter on a rare type would otherwise scan every event up to the horizon for one page: one
  // page looks at most `filteredScanSeqs` positions, and nextAfter says where the next one goes on.
  const filtered = query.types !== undefined && query.types.length > 0 && !query.types.includes('*');
  const upper = filtered ? Math.min(query.horizon, query.after + filteredScanSeqs) : query.horizon;
  const builder = db('events')
    .select(eventColumns)
    .where('seq', '>', query.after)
    .andWhere('seq', '<=', upper)
    .orderBy('seq')
    .limit(query.limit);
  whereTypeMatches(builder, query.types);
  const rows = (await builder) as EventRow[];
  const items = rows.map(toLogEvent);
  const full = items.length === query.limit;
  return { items, nextAfter: full ? items[items.length - 1]!.seq : upper };
}

/** Positions one filtered page of the log looks at, at most. */
export const filteredScanSeqs = 10_000;

/** Events in a time range, for webhook replay. */
export async function readEventsBetween(
  db: Knex,
  query: { after: number; since: Date; until?: Date; limit: number; types?: readonly string[] },
): Promise<LogEvent[]> {
  const builder = db('events')
    .select(eventColumns)
    .where('seq', '>', query.after)
    .andWhere('occurred_at', '>=', query.since)
    .orderBy('seq')
    .limit(query.limit);
  if (query.until) builder.andWhere('occurred_at', '<', query.until);
  whereTypeMatches(builder, query.types);
  return ((await builder) as EventRow[]).map(toLogEvent);
}

/** Every event with seq <= this was deleted by retention (0: none). */
export async function prunedThroughSeq(db: Knex): Promise<number> {
  const row = await db('event_log_state').first('pruned_through_seq');
  return row?.pruned_through_seq ?? 0;
}

export async function assertRetained(db: Knex, after: number): Promise<void> {
  const pruned = await prunedThroughSeq(db);
  if (after < pruned) throw new EventsPrunedError(after, pruned + 1);
}

/** Refuses a position beyond the last seq drawn (a reader that would silently skip what comes next). */
export async function assertNotAhead(db: Knex, after: number): Promise<void> {
  const head = await lastDrawnSeq(db);
  if (after > head) throw new PositionAheadError(after, head);
}

/**
 * Deletes events older than the retention, oldest first and in batches, never past what the
 * webhook relay has read. Deliveries of deleted events go with them.
 */
export async function pruneEvents(
  db: Knex,
  input: { olderThanDays: number; batchSize?: number },
): Promise<{ deleted: number; prunedThroughSeq: number }> {
  const batchSize = input.batchSize ?? 5000;
  const { rows } = await db.raw<{ rows: { limit_seq: number | null }[] }>(
    // least() ignores nulls: an empty side must count as "nothing to prune", not "no limit".
    `select least(
       coalesce((select max(seq) from events where occurred_at < now() - make_interval(days => ?)), 0),
       coalesce((select min(position) from outbox_cursors), 0)
     ) as limit_seq`,
    [input.olderThanDays],
  );
  const limitSeq = rows[0]?.limit_seq ?? 0;
  let deleted = 0;
  for (;;) {
    const result = await db.raw<{ rowCount: number }>(
      `delete from events where seq in (select seq from events where seq <= ? order by seq limit ?)`,
      [limitSeq, batchSize],
    );
    deleted += result.rowCount;
    if (result.rowCount < batchSize) break;
  }
  const [state] = await db('event_log_state')
    .update({
      pruned_through_seq: db.raw('greatest(pruned_through_seq, ?)', [limitSeq]),
      pruned_at: deleted > 0 ? db.fn.now() : db.raw('pruned_at'),
    })
    .returning('pruned_through_seq');
  return { deleted, prunedThroughSeq: state?.pruned_through_seq ?? limitSeq };
}
