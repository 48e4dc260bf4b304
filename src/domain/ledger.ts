import type { Knex } from 'knex';
import { cursors } from '../schemas/fields.js';
import type { Movement, MovementKind, NewMovement } from '../schemas/inventory.js';

interface MovementRow {
  id: number;
  kind: MovementKind;
  sku: string;
  location: string;
  delta: number;
  on_hand_after: number;
  reserved_after: number;
  reason: string | null;
  reference: string | null;
  note: string | null;
  reservation_id: string | null;
  actor: string | null;
  job_id: string | null;
  created_at: Date;
}

// Named, not `*`: a prepared statement whose result columns change with a migration would fail.
const movementColumns = `id, kind, sku, location, delta, on_hand_after, reserved_after, reason, reference, note,
  reservation_id, actor, job_id, created_at`;

export const toMovement = (row: MovementRow): Movement => ({
  id: row.id,
  kind: row.kind,
  sku: row.sku,
  location: row.location,
  delta: row.delta,
  onHandAfter: row.on_hand_after,
  reservedAfter: row.reserved_after,
  reason: row.reason,
  reference: row.reference,
  note: row.note,
  reservationId: row.reservation_id,
  actor: row.actor,
  jobId: row.job_id,
  createdAt: row.created_at.toISOString(),
});

/**
 * Appends movements in one statement, in the given order (`order by n`: the trigger applies
 * rows as they are inserted, and the callers' checks assumed this order). The ledger trigger
 * applies each row to its level (the CHECKs of inventory_levels refuse an impossible one) and
 * writes its `stock.moved` event; callers lock the levels first (`lockLevels`) so the rows apply
 * in a deterministic order. A row's job id and actor default to the transaction's settings; a
 * group-commit batch gives each row its own (the movements of several jobs in one statement).
 */
export async function insertMovements(
  db: Knex,
  movements: (NewMovement & { jobId?: string; actor?: string })[],
): Promise<Movement[]> {
  if (movements.length === 0) return [];
  // One statement text for any number of rows, prepared once per connection (named statement).
  const { rows } = await db
    .raw<{ rows: MovementRow[] }>(
      `insert into stock_movements
         (kind, sku, location, delta, reason, reference, note, reservation_id, job_id, actor, unit_cost,
          on_hand_after, reserved_after)
       select kind, sku, location, delta, reason, reference, note, reservation_id, job_id, actor, unit_cost, 0, 0
       from unnest(?::text[], ?::text[], ?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::uuid[],
                   ?::text[], ?::text[], ?::bigint[])
         with ordinality as m (kind, sku, location, delta, reason, reference, note, reservation_id, job_id, actor,
                               unit_cost, n)
       order by n
       returning ${movementColumns}`,
      [
        movements.map((m) => m.kind),
        movements.map((m) => m.sku),
        movements.map((m) => m.location),
        movements.map((m) => m.delta),
        movements.map((m) => m.reason),
        movements.map((m) => m.reference ?? null),
        movements.map((m) => m.note ?? null),
        movements.map((m) => m.reservationId ?? null),
        movements.map((m) => m.jobId ?? null),
        movements.map((m) => m.actor ?? null),
        movements.map((m) => m.unitCost ?? null),
      ] as Knex.RawBinding[],
    )
    .options({ name: 'stockflow_insert_movements' });
  // Ids come from the sequence in insertion order (`order by n`).
  return rows.sort((a, b) => a.id - b.id).map(toMovement);
}

export interface HistoryQuery {
  sku?: string;
  location?: string;
  kind?: MovementKind;
  since?: string;
  until?: string;
  limit: number;
  /** The last movement id of the page before (decoded by `cursors.movement`). */
  cursor?: number;
}

/** Movement ids one page of a history without `sku` looks at, at most (sku pages use their index). */
export const historyScanIds = 50_000;

/**
 * The ledger newest first, keyset-paginated by movement id.
 * Without a sku, a rare location, kind or time range would scan the whole ledger for one page:
 * such a page looks at `historyScanIds` ids at most, and may come back short (even empty) with a
 * nextCursor to go on from.
 */
export async function listMovements(
  db: Knex,
  query: HistoryQuery,
): Promise<{ items: Movement[]; nextCursor: string | null }> {
  const builder = db<MovementRow>('stock_movements')
    .orderBy('id', 'desc')
    .limit(query.limit + 1);
  let floor: number | undefined;
  if (!query.sku && (query.location || query.kind || query.since || query.until)) {
    const below =
      query.cursor !== undefined
        ? query.cursor
        : Number((await db('stock_movements').max<{ max: number | null }[]>('id as max'))[0]?.max ?? 0) + 1;
    floor = Math.max(below - historyScanIds, 1);
    builder.where('id', '>=', floor);
  }
  if (query.sku) builder.where('sku', query.sku);
  if (query.location) builder.where('location', query.location);
  if (query.kind) builder.where('kind', query.kind);
  if (query.since) builder.where('created_at', '>=', query.since);
  if (query.until) builder.where('created_at', '<', query.until);
  if (query.cursor !== undefined) builder.where('id', '<', query.cursor);
  const rows = (await builder) as MovementRow[];
  const items = rows.slice(0, query.limit).map(toMovement);
  if (rows.length > query.limit)
    return { items, nextCursor: cursors.movement.encode(items[items.length - 1]!.id) };
  // The window ran out before the page filled: older ids remain to be looked at.
  if (floor !== undefined && floor > 1) return { items, nextCursor: cursors.movement.encode(floor) };
  return { items, nextCursor: null };
}
