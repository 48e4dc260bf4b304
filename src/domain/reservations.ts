import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { DomainError } from '../errors.js';
import type { EventType } from '../events/catalogue.js';
import { appendEvent, appendEvents } from '../events/outbox.js';
import { type AllocationRule, allocate, type Candidate } from './allocation.js';
import { insertMovements } from './ledger.js';
import { availableOf, type LevelKey, levelKey, lockCandidateLevels, lockLevels } from './levels.js';
import { assertKnown } from './stock.js';

export type ReservationStatus = 'active' | 'committed' | 'released' | 'expired';

export interface ReservationLine {
  /** Index of the request line this allocation serves; a split line appears once per location. */
  line: number;
  sku: string;
  location: string;
  quantity: number;
  /** The allocation rule that chose the location. */
  rule: AllocationRule;
}

export interface Reservation {
  id: string;
  reference: string;
  status: ReservationStatus;
  expiresAt: string;
  createdAt: string;
  updatedAt: string;
  closedAt: string | null;
  version: number;
  lines: ReservationLine[];
}

interface ReservationRow {
  id: string;
  reference: string;
  status: ReservationStatus;
  expires_at: Date;
  created_at: Date;
  updated_at: Date;
  closed_at: Date | null;
  version: number;
  /** Computed on read: active but past expires_at (the expiry job has not run yet). */
  due?: boolean;
  lines: {
    line_no: number;
    request_line: number;
    sku: string;
    location: string;
    quantity: number;
    rule: AllocationRule;
  }[];
}

const toReservation = (row: ReservationRow): Reservation => ({
  id: row.id,
  reference: row.reference,
  status: row.status,
  expiresAt: new Date(row.expires_at).toISOString(),
  createdAt: new Date(row.created_at).toISOString(),
  updatedAt: new Date(row.updated_at).toISOString(),
  closedAt: row.closed_at ? new Date(row.closed_at).toISOString() : null,
  version: row.version,
  lines: [...row.lines]
    .sort((a, b) => a.line_no - b.line_no)
    .map((l) => ({
      line: l.request_line,
      sku: l.sku,
      location: l.location,
      quantity: Number(l.quantity),
      rule: l.rule,
    })),
});

const reservationEvent = (type: EventType, reservation: Reservation) => ({
  type,
  aggregate: { type: 'reservation', id: reservation.id },
  data: { reservation },
});

export interface ReserveInput {
  reference: string;
  lines: { sku: string; quantity: number; location?: string }[];
  ttlSeconds: number;
}

/**
 * Reserves every line or none. Candidate levels (every active location of the skus without a
 * location, and the named ones) are locked in the global order first, so concurrent reservations
 * of a hot sku queue on its row lock and can never both take the last unit.
 */
export async function createReservation(db: Knex, input: ReserveInput): Promise<Reservation> {
  const lines = input.lines.map((l, index) => ({ ...l, index }));
  const explicit: (LevelKey & { index: number })[] = lines.flatMap((l) =>
    l.location ? [{ sku: l.sku, location: l.location, index: l.index }] : [],
  );
  const openSkus = [...new Set(lines.filter((l) => !l.location).map((l) => l.sku))];
  const rows = await lockCandidateLevels(db, openSkus, explicit);
  const candidates: Candidate[] = rows.map((r) => ({
    sku: r.sku,
    location: r.location,
    available: availableOf(r),
    priority: r.priority,
    active: r.active,
  }));

  // Rare path: a named level that does not exist yet, or a sku without any active level.
  const lockedKeys = new Set(rows.map(levelKey));
  const missing = explicit.filter((k) => !lockedKeys.has(levelKey(k)));
  const skusWithLevels = new Set(rows.map((r) => r.sku));
  const bare = openSkus.filter((s) => !skusWithLevels.has(s));
  if (missing.length > 0 || bare.length > 0) {
    const locked = await lockLevels(db, missing);
    const known = new Set(
      (await db('products').whereIn('sku', bare).select('sku')).map((r: { sku: string }) => r.sku),
    );
    for (const sku of bare) if (!known.has(sku)) locked.unknownSkus.add(sku);
    const keyed = lines.map((l) => ({ ...l, location: l.location ?? '' }));
    assertKnown(keyed, locked.unknownSkus, locked.unknownLocations);
    for (const r of locked.levels.values()) {
      candidates.push({
        sku: r.sku,
        location: r.location,
        available: availableOf(r),
        priority: 0,
        active: false,
      });
    }
  }

  const outcome = allocate(lines, candidates);
  if (!outcome.ok) {
    throw new DomainError(
      'insufficient_stock',
      `${outcome.shortages.length} line(s) cannot be reserved: not enough available stock`,
      { lines: outcome.shortages },
    );
  }
  const id = randomUUID();
  const allocations = outcome.allocations;
  const { rows: created } = await db.raw<{ rows: ReservationRow[] }>(
    `with r as (
       insert into reservations (id, reference, expires_at)
       values (?, ?, now() + make_interval(secs => ?))
       returning *
     ), l as (
       insert into reservation_lines (reservation_id, line_no, request_line, sku, location, quantity, rule)
       select r.id, t.n, t.request_line, t.sku, t.location, t.quantity, t.rule
       from r, unnest(?::int[], ?::int[], ?::text[], ?::text[], ?::bigint[], ?::text[])
         as t (n, request_line, sku, location, quantity, rule)
       returning line_no, request_line, sku, location, quantity, rule
     )
     select r.*, (select json_agg(l) from l) as lines from r`,
    [
      id,
      input.reference,
      input.ttlSeconds,
      allocations.map((_, n) => n),
      allocations.map((a) => a.index),
      allocations.map((a) => a.sku),
      allocations.map((a) => a.location),
      allocations.map((a) => a.quantity),
      allocations.map((a) => a.rule),
    ],
  );
  await insertMovements(
    db,
    allocations.map((a) => ({
      kind: 'reserve' as const,
      sku: a.sku,
      location: a.location,
      delta: a.quantity,
      reason: 'reservation',
      reference: input.reference,
      reservationId: id,
    })),
  );
  const reservation = toReservation(created[0]!);
  await appendEvent(db, reservationEvent('reservation.created', reservation));
  return reservation;
}

const selectReservation = `
  select r.*, r.status = 'active' and r.expires_at <= now() as due,
         coalesce((select json_agg(l) from reservation_lines l where l.reservation_id = r.id), '[]') as lines
  from reservations r`;

export async function getReservation(db: Knex, id: string): Promise<Reservation | undefined> {
  const { rows } = await db.raw<{ rows: ReservationRow[] }>(`${selectReservation} where r.id = ?`, [id]);
  return rows[0] && toReservation(rows[0]);
}

type Transition = 'commit' | 'release' | 'extend';

/** Locks the reservation (before any level: the lock order of every reservation job) and checks the transition. */
async function lockForTransition(db: Knex, id: string, transition: Transition): Promise<ReservationRow> {
  const { rows } = await db.raw<{ rows: ReservationRow[] }>(
    `${selectReservation} where r.id = ? for update of r`,
    [id],
  );
  const row = rows[0];
  if (!row) throw new DomainError('not_found', `Reservation ${id} does not exist`, { reservationId: id });
  // An active reservation past its expiry is expired for commit and extend, even before the expiry job runs.
  const state = row.due && transition !== 'release' ? 'expired' : row.status;
  if (state !== 'active') {
    throw new DomainError('invalid_transition', `Reservation ${id} is ${state} and cannot ${transition}`, {
      reservationId: id,
      currentState: state,
      transition,
    });
  }
  return row;
}

/** Closes reservations: moves their stock (commit: a sale out of reserved; release/expire: back to available). */
async function close(
  db: Knex,
  rows: ReservationRow[],
  to: 'committed' | 'released' | 'expired',
): Promise<Reservation[]> {
  const lines = rows.flatMap((r) => r.lines.map((l) => ({ ...l, reservation: r })));
  await lockLevels(db, lines);
  await insertMovements(
    db,
    lines.map((l) => ({
      kind: to === 'committed' ? ('commit' as const) : ('release' as const),
      sku: l.sku,
      location: l.location,
      delta: -Number(l.quantity),
      reason: to === 'committed' ? 'sale' : to,
      reference: l.reservation.reference,
      reservationId: l.reservation.id,
    })),
  );
  const updated = await db('reservations')
    .whereIn(
      'id',
      rows.map((r) => r.id),
    )
    .update({ status: to, closed_at: db.fn.now() })
    .returning('*');
  const linesById = new Map(rows.map((r) => [r.id, r.lines]));
  return (updated as ReservationRow[]).map((r) => toReservation({ ...r, lines: linesById.get(r.id)! }));
}

export async function commitReservation(db: Knex, input: { reservationId: string }): Promise<Reservation> {
  const row = await lockForTransition(db, input.reservationId, 'commit');
  const [reservation] = await close(db, [row], 'committed');
  await appendEvent(db, reservationEvent('reservation.committed', reservation!));
  return reservation!;
}

export async function releaseReservation(db: Knex, input: { reservationId: string }): Promise<Reservation> {
  const row = await lockForTransition(db, input.reservationId, 'release');
  const [reservation] = await close(db, [row], 'released');
  await appendEvent(db, reservationEvent('reservation.released', reservation!));
  return reservation!;
}

/** Moves the expiry to `ttlSeconds` from now. */
export async function extendReservation(
  db: Knex,
  input: { reservationId: string; ttlSeconds: number },
): Promise<Reservation> {
  const row = await lockForTransition(db, input.reservationId, 'extend');
  const [updated] = await db('reservations')
    .where({ id: row.id })
    .update({ expires_at: db.raw('now() + make_interval(secs => ?)', [input.ttlSeconds]) })
    .returning('*');
  const reservation = toReservation({ ...(updated as ReservationRow), lines: row.lines });
  await appendEvent(db, reservationEvent('reservation.extended', reservation));
  return reservation;
}

/**
 * Expires up to `limit` active reservations past their expiry, oldest first, releasing their stock.
 * Reservations locked by a running commit or release are skipped (SKIP LOCKED): the next run sees them.
 */
export async function expireReservations(
  db: Knex,
  input: { limit: number },
): Promise<{ expired: number; reservationIds: string[] }> {
  const { rows } = await db.raw<{ rows: ReservationRow[] }>(
    `${selectReservation}
     where r.status = 'active' and r.expires_at <= now()
     order by r.expires_at
     limit ?
     for update of r skip locked`,
    [input.limit],
  );
  if (rows.length === 0) return { expired: 0, reservationIds: [] };
  const expired = await close(db, rows, 'expired');
  await appendEvents(
    db,
    expired.map((r) => reservationEvent('reservation.expired', r)),
  );
  return { expired: expired.length, reservationIds: expired.map((r) => r.id) };
}
