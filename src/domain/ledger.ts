import type { Knex } from 'knex';

export const movementKinds = [
  'receipt',
  'adjustment',
  'sale',
  'return',
  'transfer_out',
  'transfer_in',
  'reserve',
  'release',
  'commit',
  'count',
] as const;
export type MovementKind = (typeof movementKinds)[number];

/** One row of the append-only stock ledger. */
export interface Movement {
  id: number;
  kind: MovementKind;
  sku: string;
  location: string;
  delta: number;
  onHandAfter: number;
  reservedAfter: number;
  reason: string | null;
  reference: string | null;
  note: string | null;
  reservationId: string | null;
  actor: string | null;
  /** Correlation id: the job that wrote the movement. */
  jobId: string | null;
  createdAt: string;
}

export interface NewMovement {
  kind: MovementKind;
  sku: string;
  location: string;
  delta: number;
  reason: string;
  reference?: string | null;
  note?: string | null;
  reservationId?: string | null;
}

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
 * Appends movements in one statement, in the given order. The ledger trigger applies each row to
 * its level (the CHECKs of inventory_levels refuse an impossible one) and writes its `stock.moved`
 * event; callers lock the levels first (`lockLevels`) so the rows apply in a deterministic order.
 */
export async function insertMovements(db: Knex, movements: NewMovement[]): Promise<Movement[]> {
  if (movements.length === 0) return [];
  const rows = await db<MovementRow>('stock_movements')
    .insert(
      movements.map((m) => ({
        kind: m.kind,
        sku: m.sku,
        location: m.location,
        delta: m.delta,
        reason: m.reason,
        reference: m.reference ?? null,
        note: m.note ?? null,
        reservation_id: m.reservationId ?? null,
        // Filled by the trigger; the columns are NOT NULL.
        on_hand_after: 0,
        reserved_after: 0,
      })) as never,
    )
    .returning('*');
  return (rows as MovementRow[]).sort((a, b) => a.id - b.id).map(toMovement);
}

export interface HistoryQuery {
  sku?: string;
  location?: string;
  kind?: MovementKind;
  since?: string;
  until?: string;
  limit: number;
  cursor?: string;
}

/** The ledger newest first, keyset-paginated by movement id (the cursor is opaque to callers). */
export async function listMovements(
  db: Knex,
  query: HistoryQuery,
): Promise<{ items: Movement[]; nextCursor: string | null }> {
  const builder = db<MovementRow>('stock_movements')
    .orderBy('id', 'desc')
    .limit(query.limit + 1);
  if (query.sku) builder.where('sku', query.sku);
  if (query.location) builder.where('location', query.location);
  if (query.kind) builder.where('kind', query.kind);
  if (query.since) builder.where('created_at', '>=', query.since);
  if (query.until) builder.where('created_at', '<', query.until);
  if (query.cursor) builder.where('id', '<', decodeCursor(query.cursor));
  const rows = (await builder) as MovementRow[];
  const items = rows.slice(0, query.limit).map(toMovement);
  const more = rows.length > query.limit;
  return { items, nextCursor: more ? encodeCursor(items[items.length - 1]!.id) : null };
}

const encodeCursor = (id: number) => Buffer.from(`m:${id}`, 'utf8').toString('base64url');

/** A cursor that does not decode reads as "before the first movement": an empty page, never an error. */
function decodeCursor(cursor: string): number {
  const match = /^m:(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  return match ? Number(match[1]) : 0;
}
