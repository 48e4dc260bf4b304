import type { Knex } from 'knex';
import { type LevelKey, type LevelRow, levelKey } from '../levels.js';

/**
 * Row locks on inventory levels, always taken in (sku, location) order: every job locks in the
 * same order, so two jobs touching the same levels queue behind each other instead of
 * deadlocking. This row lock is what serialises a hot sku, whatever the number of workers.
 */

// Named, not `*`, where a statement is prepared (a migration adding a column would break it).
const levelColumns = 'sku, location, on_hand, reserved, safety_stock, incoming, version, updated_at';

/**
 * A locked level as a batch keeps it. `priority` and `active` (of its location) are read only to
 * allocate reservations, and the lock step reads them whenever a batch holds one.
 */
export type LockedLevel = LevelKey &
  Pick<LevelRow, 'on_hand' | 'reserved' | 'safety_stock'> & { priority?: number; active?: boolean };

export interface LockedLevels {
  levels: Map<string, LevelRow>;
  unknownSkus: Set<string>;
  unknownLocations: Set<string>;
}

/**
 * Locks the levels of these keys `FOR UPDATE`, in (sku, location) order. A level missing for a
 * known sku and location (the location was inactive when the product was created) is created;
 * unknown skus and locations are reported.
 */
export async function lockLevels(db: Knex, keys: LevelKey[]): Promise<LockedLevels> {
  const unique = uniqueKeys(keys);
  const levels = new Map<string, LevelRow>();
  for (const row of await selectForUpdate(db, unique)) levels.set(levelKey(row), row);
  const missing = unique.filter((k) => !levels.has(levelKey(k)));
  const unknownSkus = new Set<string>();
  const unknownLocations = new Set<string>();
  if (missing.length === 0) return { levels, unknownSkus, unknownLocations };

  const skus = [...new Set(missing.map((k) => k.sku))];
  const locations = [...new Set(missing.map((k) => k.location))];
  const { rows } = await db.raw<{ rows: { skus: string[]; locations: string[] }[] }>(
    `select coalesce((select array_agg(sku) from products where sku = any(?::text[])), '{}') as skus,
            coalesce((select array_agg(code) from locations where code = any(?::text[])), '{}') as locations`,
    [skus, locations],
  );
  const knownSkus = new Set(rows[0]!.skus);
  const knownLocations = new Set(rows[0]!.locations);
  for (const sku of skus) if (!knownSkus.has(sku)) unknownSkus.add(sku);
  for (const location of locations) if (!knownLocations.has(location)) unknownLocations.add(location);
  const creatable = missing.filter((k) => knownSkus.has(k.sku) && knownLocations.has(k.location));
  if (creatable.length > 0) {
    await db.raw(
      `insert into inventory_levels (sku, location)
       select * from unnest(?::text[], ?::text[]) on conflict do nothing`,
      [creatable.map((k) => k.sku), creatable.map((k) => k.location)],
    );
    for (const row of await selectForUpdate(db, creatable)) levels.set(levelKey(row), row);
  }
  return { levels, unknownSkus, unknownLocations };
}

async function selectForUpdate(db: Knex, keys: LevelKey[]): Promise<LevelRow[]> {
  if (keys.length === 1) {
    // The hot path (one line): a primary-key lookup the planner cannot get wrong.
    const { rows } = await db
      .raw<{ rows: LevelRow[] }>(
        `select ${levelColumns} from inventory_levels where sku = ? and location = ? for update`,
        [keys[0]!.sku, keys[0]!.location],
      )
      .options({ name: 'stockflow_lock_level' });
    return rows;
  }
  const { rows } = await db.raw<{ rows: LevelRow[] }>(
    `select l.* from inventory_levels l
     join unnest(?::text[], ?::text[]) as k (sku, location) on l.sku = k.sku and l.location = k.location
     order by l.sku, l.location
     for update of l`,
    [keys.map((k) => k.sku), keys.map((k) => k.location)],
  );
  return rows;
}

/** Levels of active locations for these skus, locked in the same global order (for allocation). */
export async function lockCandidateLevels(
  db: Knex,
  skus: string[],
  explicit: LevelKey[],
): Promise<(LevelRow & { priority: number; active: boolean })[]> {
  const { rows } = await db.raw<{ rows: (LevelRow & { priority: number; active: boolean })[] }>(
    `select l.*, c.priority, c.active from inventory_levels l
     join locations c on c.code = l.location
     where l.sku = any(?::text[])
       and (c.active and l.sku = any(?::text[])
            or (l.sku, l.location) in (select * from unnest(?::text[], ?::text[])))
     order by l.sku, l.location
     for update of l`,
    // The first condition alone is what the primary key index serves (an OR across both would scan).
    [
      [...skus, ...explicit.map((k) => k.sku)],
      skus,
      explicit.map((k) => k.sku),
      explicit.map((k) => k.location),
    ],
  );
  return rows;
}

/**
 * The lock step of a batch: every existing level the jobs name (`keys`) and, for reservations
 * without a location (`skus`), every active level of those skus, in one ordered statement. Levels
 * not created yet are not created here: the job naming one is decided by its domain function.
 */
export async function lockBatchLevels(db: Knex, keys: LevelKey[], skus: string[]): Promise<LockedLevel[]> {
  if (skus.length === 0 && keys.length > 0) return selectForUpdate(db, uniqueKeys(keys));
  if (skus.length === 0) return [];
  return lockCandidateLevels(db, skus, keys);
}

/**
 * The figures of these skus' levels now, with their locations' priority and active flag, without
 * locking (the caller holds the locks it needs: after a job's domain function, what it changed).
 */
export async function readLevels(db: Knex, skus: string[]): Promise<LockedLevel[]> {
  const { rows } = await db.raw<{ rows: LockedLevel[] }>(
    `select l.sku, l.location, l.on_hand, l.reserved, l.safety_stock, c.priority, c.active
     from inventory_levels l join locations c on c.code = l.location where l.sku = any(?::text[])`,
    [skus],
  );
  return rows;
}

const uniqueKeys = (keys: LevelKey[]) => [...new Map(keys.map((k) => [levelKey(k), k])).values()];
