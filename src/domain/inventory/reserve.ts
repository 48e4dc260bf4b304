import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { Reservation, ReserveInput } from '../../schemas/reservations.js';
import { type LevelKey, levelKey } from '../levels.js';
import { type LockedLevel, lockCandidateLevels, lockLevels } from './lock.js';
import {
  assertKnown,
  candidateOf,
  type Decision,
  decide,
  planReservation,
  reserveMovements,
} from './planner.js';
import { writeDecisions } from './writer.js';

/**
 * Reserves every line or none. Candidate levels (every active location of the skus without a
 * location, and the named ones) are locked in the global order first, so concurrent reservations
 * of a hot sku queue on its row lock and can never both take the last unit. Decided as the
 * group-commit batch decides it (`decide`); this path also creates a named level that does not
 * exist yet and tells an unknown sku from a shortage.
 */
export async function createReservation(db: Knex, input: ReserveInput): Promise<Reservation> {
  const lines = input.lines.map((l, index) => ({ ...l, index }));
  const explicit: (LevelKey & { index: number })[] = lines.flatMap((l) =>
    l.location ? [{ sku: l.sku, location: l.location, index: l.index }] : [],
  );
  const openSkus = [...new Set(lines.filter((l) => !l.location).map((l) => l.sku))];
  const rows = await lockCandidateLevels(db, openSkus, explicit);
  const levels = new Map<string, LockedLevel>(rows.map((r) => [levelKey(r), r]));
  const decision =
    decide(levels, { kind: 'reserve', reserve: input }, randomUUID) ??
    (await decideWithMissingLevels(db, input, rows, explicit, openSkus));
  const [reservation] = await writeDecisions(db, [decision]);
  return reservation as Reservation;
}

/** Rare path: a named level that does not exist yet, or a sku without any active level. */
async function decideWithMissingLevels(
  db: Knex,
  input: ReserveInput,
  rows: LockedLevel[],
  explicit: (LevelKey & { index: number })[],
  openSkus: string[],
): Promise<Decision> {
  const lines = input.lines.map((l, index) => ({ ...l, index }));
  const candidates = rows.map(candidateOf);
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
    // A level just created, or one at an inactive location: a candidate for the lines naming it only.
    for (const r of locked.levels.values())
      candidates.push(candidateOf({ ...r, priority: 0, active: false }));
  }
  const allocations = planReservation(lines, candidates);
  const id = randomUUID();
  return {
    kind: 'reserve',
    reservation: { id, input, allocations },
    movements: reserveMovements(id, input.reference, allocations),
  };
}
