import type { Knex } from 'knex';
import { DomainError } from '../errors/domain-error.js';
import { appendEvent, appendEvents } from '../events/outbox.js';
import type { EventType } from '../schemas/event-types.js';
import type { Movement } from '../schemas/inventory.js';
import type {
  AllocationRule,
  Reservation,
  ReservationOwner,
  ReservationStatus,
  ReserveInput,
} from '../schemas/reservations.js';
import type { Allocation } from './allocation.js';
import { lockLevels } from './inventory/lock.js';
import { insertMovements } from './ledger.js';

interface ReservationRow {
  id: string;
  reference: string;
  status: ReservationStatus;
  expires_at: Date | null;
  owner: ReservationOwner | null;
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
    committed: number;
    released: number;
    rule: AllocationRule;
  }[];
}

type ReservationLineRow = ReservationRow['lines'][number];

/** What a line still holds. */
const openOf = (l: ReservationLineRow) => Number(l.quantity) - Number(l.committed) - Number(l.released);

const toReservation = (row: ReservationRow): Reservation => ({
  id: row.id,
  reference: row.reference,
  status: row.status,
  expiresAt: row.expires_at ? new Date(row.expires_at).toISOString() : null,
  owner: row.owner,
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
      committed: Number(l.committed),
      released: Number(l.released),
      rule: l.rule,
    })),
});

const reservationEvent = (type: EventType, reservation: Reservation) => ({
  type,
  aggregate: { type: 'reservation', id: reservation.id },
  data: { reservation },
});

/** A reservation decided (`decide`, src/domain/inventory/planner.ts), before it is written. */
export interface PlannedReservation {
  id: string;
  input: ReserveInput;
  allocations: Allocation[];
}

/**
 * Writes decided reservations and their lines, several jobs' in one statement; their `reserve`
 * movements and `reservation.created` events are the caller's (`writeDecisions`). Answers the
 * reservations in the given order.
 */
export async function insertReservations(db: Knex, planned: PlannedReservation[]): Promise<Reservation[]> {
  if (planned.length === 0) return [];
  const lines = planned.flatMap((p) => p.allocations.map((a, n) => ({ id: p.id, n, a })));
  // Prepared once per connection (a statement on every reservation's path): columns named, not `*`.
  const { rows } = await db
    .raw<{ rows: ReservationRow[] }>(
      `with r as (
       insert into reservations (id, reference, expires_at, owner)
       select id, reference, now() + make_interval(secs => ttl), owner
       from unnest(?::uuid[], ?::text[], ?::float8[], ?::text[]) as t (id, reference, ttl, owner)
       returning id, reference, status, expires_at, owner, created_at, updated_at, closed_at, version
     ), l as (
       insert into reservation_lines (reservation_id, line_no, request_line, sku, location, quantity, rule)
       select r.id, t.n, t.request_line, t.sku, t.location, t.quantity, t.rule
       from unnest(?::uuid[], ?::int[], ?::int[], ?::text[], ?::text[], ?::bigint[], ?::text[])
         as t (reservation_id, n, request_line, sku, location, quantity, rule)
       join r on r.id = t.reservation_id
       returning reservation_id, line_no, request_line, sku, location, quantity, committed, released, rule
     )
     select r.*, (select json_agg(l) from l where l.reservation_id = r.id) as lines from r`,
      [
        planned.map((p) => p.id),
        planned.map((p) => p.input.reference),
        planned.map((p) => p.input.ttlSeconds),
        planned.map((p) => p.input.owner ?? null),
        lines.map((l) => l.id),
        lines.map((l) => l.n),
        lines.map((l) => l.a.index),
        lines.map((l) => l.a.sku),
        lines.map((l) => l.a.location),
        lines.map((l) => l.a.quantity),
        lines.map((l) => l.a.rule),
      ] as Knex.RawBinding[],
    )
    .options({ name: 'stockflow_insert_reservations' });
  const byId = new Map(rows.map((row) => [row.id, toReservation(row)]));
  return planned.map((p) => byId.get(p.id)!);
}

export const reservationCreated = (reservation: Reservation) =>
  reservationEvent('reservation.created', reservation);

const selectReservation = `
  select r.*, r.status = 'active' and r.expires_at <= now() as due,
         coalesce((select json_agg(l) from reservation_lines l where l.reservation_id = r.id), '[]') as lines
  from reservations r`;

export async function getReservation(db: Knex, id: string): Promise<Reservation | undefined> {
  const { rows } = await db.raw<{ rows: ReservationRow[] }>(`${selectReservation} where r.id = ?`, [id]);
  return rows[0] && toReservation(rows[0]);
}

type Transition = 'commit' | 'release' | 'extend';

/** Who asks for a transition: nobody in particular (the reservation routes), or the reservation's owner. */
interface TransitionInput {
  reservationId: string;
  /** Only the owner may change an owned reservation; the reservation routes pass none. */
  owner?: ReservationOwner;
}

/** Locks the reservation (before any level: the lock order of every reservation job) and checks the transition. */
async function lockForTransition(
  db: Knex,
  input: TransitionInput,
  transition: Transition,
): Promise<ReservationRow> {
  const id = input.reservationId;
  const { rows } = await db.raw<{ rows: ReservationRow[] }>(
    `${selectReservation} where r.id = ? for update of r`,
    [id],
  );
  const row = rows[0];
  if (!row) throw new DomainError('not_found', `Reservation ${id} does not exist`, { reservationId: id });
  // An active reservation past its expiry is expired for commit and extend, even before the expiry job runs.
  const state = row.due && transition !== 'release' ? 'expired' : row.status;
  if (row.owner !== (input.owner ?? null)) {
    throw new DomainError(
      'invalid_transition',
      row.owner
        ? `Reservation ${id} belongs to ${row.owner} ${row.reference}: change it through that ${row.owner}`
        : `Reservation ${id} belongs to no ${input.owner}`,
      { reservationId: id, currentState: state, transition, owner: row.owner, reference: row.reference },
    );
  }
  if (state !== 'active') {
    throw new DomainError('invalid_transition', `Reservation ${id} is ${state} and cannot ${transition}`, {
      reservationId: id,
      currentState: state,
      transition,
    });
  }
  return row;
}

interface Part {
  line: ReservationLineRow;
  reservation: ReservationRow;
  quantity: number;
}

/**
 * Moves parts of reservation lines out of reserved (commit: a sale; release/expire: back to
 * available) and records them on the lines. The levels are locked in the global order first.
 */
async function moveParts(db: Knex, parts: Part[], kind: 'commit' | 'release', reason: string) {
  const moving = parts.filter((p) => p.quantity > 0);
  if (moving.length === 0) return [];
  await lockLevels(
    db,
    moving.map((p) => p.line),
  );
  const movements = await insertMovements(
    db,
    moving.map((p) => ({
      kind,
      sku: p.line.sku,
      location: p.line.location,
      delta: -p.quantity,
      reason,
      reference: p.reservation.reference,
      reservationId: p.reservation.id,
    })),
  );
  const column = kind === 'commit' ? 'committed' : 'released';
  await db.raw(
    `update reservation_lines l set ${column} = l.${column} + t.quantity
     from unnest(?::uuid[], ?::int[], ?::bigint[]) as t (reservation_id, line_no, quantity)
     where l.reservation_id = t.reservation_id and l.line_no = t.line_no`,
    [moving.map((p) => p.reservation.id), moving.map((p) => p.line.line_no), moving.map((p) => p.quantity)],
  );
  return movements;
}

/** Closes reservations: moves what their lines still hold (commit: a sale out of reserved; release/expire: back to available). */
async function close(
  db: Knex,
  rows: ReservationRow[],
  to: 'committed' | 'released' | 'expired',
): Promise<Reservation[]> {
  const parts = rows.flatMap((r) =>
    r.lines.map((line) => ({ line, reservation: r, quantity: openOf(line) })),
  );
  await moveParts(db, parts, to === 'committed' ? 'commit' : 'release', to === 'committed' ? 'sale' : to);
  await db('reservations')
    .whereIn(
      'id',
      rows.map((r) => r.id),
    )
    .update({ status: to, closed_at: db.fn.now() });
  return readReservations(
    db,
    rows.map((r) => r.id),
  );
}

async function readReservations(db: Knex, ids: string[]): Promise<Reservation[]> {
  const { rows } = await db.raw<{ rows: ReservationRow[] }>(
    `${selectReservation} where r.id = any(?::uuid[]) order by r.expires_at, r.id`,
    [ids],
  );
  return rows.map(toReservation);
}

export async function commitReservation(db: Knex, input: TransitionInput): Promise<Reservation> {
  const row = await lockForTransition(db, input, 'commit');
  const [reservation] = await close(db, [row], 'committed');
  await appendEvent(db, reservationEvent('reservation.committed', reservation!));
  return reservation!;
}

export async function releaseReservation(db: Knex, input: TransitionInput): Promise<Reservation> {
  const row = await lockForTransition(db, input, 'release');
  const [reservation] = await close(db, [row], 'released');
  await appendEvent(db, reservationEvent('reservation.released', reservation!));
  return reservation!;
}

/**
 * Commits part of an active reservation: for each request line, `quantity` units out of its
 * allocations in allocation order, at the locations the allocation chose. The reservation closes
 * as committed once it holds nothing more. Asking for more than a line holds fails
 * `insufficient_reserved` with every such line.
 */
export async function commitReservationPart(
  db: Knex,
  input: TransitionInput & { lines: { line: number; quantity: number }[] },
): Promise<{ reservation: Reservation; movements: Movement[] }> {
  const row = await lockForTransition(db, input, 'commit');
  const parts: Part[] = [];
  const short: { line: number; requested: number; reserved: number }[] = [];
  for (const wanted of input.lines) {
    const allocations = row.lines
      .filter((l) => l.request_line === wanted.line)
      .sort((a, b) => a.line_no - b.line_no);
    const held = allocations.reduce((n, l) => n + openOf(l), 0);
    if (wanted.quantity > held) {
      short.push({ line: wanted.line, requested: wanted.quantity, reserved: held });
      continue;
    }
    let left = wanted.quantity;
    for (const line of allocations) {
      const take = Math.min(left, openOf(line));
      if (take > 0) parts.push({ line, reservation: row, quantity: take });
      left -= take;
    }
  }
  if (short.length > 0) {
    throw new DomainError('insufficient_reserved', `${short.length} line(s) ask for more than is reserved`, {
      reservationId: row.id,
      lines: short,
    });
  }
  const movements = await moveParts(db, parts, 'commit', 'sale');
  const taken = new Map<number, number>();
  for (const p of parts) taken.set(p.line.line_no, (taken.get(p.line.line_no) ?? 0) + p.quantity);
  const emptied = row.lines.every((l) => openOf(l) === (taken.get(l.line_no) ?? 0));
  await db('reservations')
    .where({ id: row.id })
    .update(emptied ? { status: 'committed', closed_at: db.fn.now() } : { updated_at: db.fn.now() });
  const [reservation] = await readReservations(db, [row.id]);
  if (emptied) await appendEvent(db, reservationEvent('reservation.committed', reservation!));
  return { reservation: reservation!, movements };
}

/** Moves the expiry to `ttlSeconds` from now, or (null) holds the reservation until it is committed or released. */
export async function extendReservation(
  db: Knex,
  input: TransitionInput & { ttlSeconds: number | null },
): Promise<Reservation> {
  const row = await lockForTransition(db, input, 'extend');
  await db('reservations')
    .where({ id: row.id })
    .update({
      expires_at:
        input.ttlSeconds === null ? null : db.raw('now() + make_interval(secs => ?)', [input.ttlSeconds]),
    });
  const [reservation] = await readReservations(db, [row.id]);
  await appendEvent(db, reservationEvent('reservation.extended', reservation!));
  return reservation!;
}

/**
 * Expires up to `limit` active reservations past their expiry, oldest first, releasing their stock.
 * Reservations locked by a running commit or release are skipped (SKIP LOCKED): the next run sees them.
 * Without `owner`, only reservations nobody owns; with it, only that owner's among `reservationIds`
 * (the owner has locked its own rows first, so its lock order holds).
 */
export async function expireReservations(
  db: Knex,
  input: { limit: number; owner?: ReservationOwner; reservationIds?: string[] },
): Promise<{ expired: number; reservationIds: string[] }> {
  const { rows } = await db.raw<{ rows: ReservationRow[] }>(
    `${selectReservation}
     where r.status = 'active' and r.expires_at <= now() and r.owner is not distinct from ?
       and (?::uuid[] is null or r.id = any(?::uuid[]))
     order by r.expires_at
     limit ?
     for update of r skip locked`,
    [input.owner ?? null, input.reservationIds ?? null, input.reservationIds ?? null, input.limit],
  );
  if (rows.length === 0) return { expired: 0, reservationIds: [] };
  const expired = await close(db, rows, 'expired');
  await appendEvents(
    db,
    expired.map((r) => reservationEvent('reservation.expired', r)),
  );
  return { expired: expired.length, reservationIds: expired.map((r) => r.id) };
}
