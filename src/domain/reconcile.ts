import type { Knex } from 'knex';
import { setJobContext } from '../db/job-context.js';

/** A level that disagrees with what the ledger and the active reservations say it must be. */
export interface Drift {
  sku: string;
  location: string;
  /** The stored level; null when the ledger has movements for a level that does not exist. */
  level: { onHand: number; reserved: number } | null;
  /** Recomputed from every movement. */
  ledger: { onHand: number; reserved: number };
  /** Sum of the active reservation lines at this level: what `reserved` must be. */
  activeReserved: number;
}

/**
 * Recomputes every level from the ledger (and reserved from the active reservations) and returns
 * the levels that differ. Empty means ledger = levels.
 */
export async function findDrift(db: Knex, only?: { sku: string; location: string }): Promise<Drift[]> {
  const sku = only?.sku ?? null;
  const location = only?.location ?? null;
  const filter = '(?::text is null or sku = ?::text) and (?::text is null or location = ?::text)';
  const params = [sku, sku, location, location];
  const { rows } = await db.raw<{
    rows: {
      sku: string;
      location: string;
      level_on_hand: number | null;
      level_reserved: number | null;
      ledger_on_hand: number;
      ledger_reserved: number;
      active_reserved: number;
    }[];
  }>(
    `
    with ledger as (
      select sku, location,
             coalesce(sum(delta) filter (where kind not in ('reserve', 'release')), 0)::bigint as on_hand,
             coalesce(sum(delta) filter (where kind in ('reserve', 'release', 'commit')), 0)::bigint as reserved
      from stock_movements where ${filter} group by sku, location
    ), held as (
      select l.sku, l.location, sum(l.quantity - l.committed - l.released)::bigint as reserved
      from reservation_lines l join reservations r on r.id = l.reservation_id
      where r.status = 'active' and ${filter.replaceAll('sku', 'l.sku').replaceAll('location', 'l.location')}
      group by l.sku, l.location
    ), levels as (
      select * from inventory_levels where ${filter}
    )
    select coalesce(v.sku, g.sku, h.sku) as sku, coalesce(v.location, g.location, h.location) as location,
           v.on_hand as level_on_hand, v.reserved as level_reserved,
           coalesce(g.on_hand, 0)::bigint as ledger_on_hand, coalesce(g.reserved, 0)::bigint as ledger_reserved,
           coalesce(h.reserved, 0)::bigint as active_reserved
    from levels v
    full join ledger g on g.sku = v.sku and g.location = v.location
    full join held h on h.sku = coalesce(v.sku, g.sku) and h.location = coalesce(v.location, g.location)
    where v.sku is null
       or v.on_hand <> coalesce(g.on_hand, 0)
       or v.reserved <> coalesce(g.reserved, 0)
       or v.reserved <> coalesce(h.reserved, 0)
    order by 1, 2`,
    [...params, ...params, ...params],
  );
  return rows.map((r) => ({
    sku: r.sku,
    location: r.location,
    level: r.level_on_hand === null ? null : { onHand: r.level_on_hand, reserved: r.level_reserved! },
    ledger: { onHand: r.ledger_on_hand, reserved: r.ledger_reserved },
    activeReserved: r.active_reserved,
  }));
}

export const describeDrift = (d: Drift) =>
  `${d.sku} @ ${d.location}: level ${d.level ? `on_hand ${d.level.onHand} reserved ${d.level.reserved}` : 'missing'}; ` +
  `ledger on_hand ${d.ledger.onHand} reserved ${d.ledger.reserved}; active reservations ${d.activeReserved}`;

/**
 * Repairs one drifted level inside the caller's transaction (and returns what it found), or
 * returns null when it no longer drifts. The level is locked and the drift recomputed first, so
 * movements made since `findDrift` are accounted for. It keeps the stock the level showed (what
 * the shop has been selling against) and makes the ledger account for it:
 * 1. the level is rebuilt from the ledger (the only write that bypasses the ledger guard);
 * 2. a `count` movement with the difference brings on_hand back to the level's value, with a
 *    note saying so;
 * 3. reserved is set to what the active reservations hold, through a `reserve`/`release`
 *    movement (reason `correction`), because a count cannot move reserved.
 */
export async function fixDrift(db: Knex, key: { sku: string; location: string }): Promise<Drift | null> {
  const { sku, location } = key;
  await db('inventory_levels').where({ sku, location }).forUpdate().first();
  const [drift] = await findDrift(db, key);
  if (!drift) return null;
  await setJobContext(db, { actor: 'reconcile' });
  await db.raw(`select set_config('stockflow.rebuild_levels', 'on', true)`);
  await db.raw(
    `insert into inventory_levels (sku, location, on_hand, reserved) values (?, ?, ?, ?)
     on conflict (sku, location) do update
       set on_hand = excluded.on_hand, reserved = excluded.reserved,
           version = inventory_levels.version + 1, updated_at = now()`,
    [sku, location, drift.ledger.onHand, drift.ledger.reserved],
  );
  await db.raw(`select set_config('stockflow.rebuild_levels', 'off', true)`);
  const keep = drift.level?.onHand ?? drift.ledger.onHand;
  const movements = [];
  if (keep !== drift.ledger.onHand) {
    movements.push({
      kind: 'count',
      delta: keep - drift.ledger.onHand,
      reason: 'count',
      note: `reconcile: inventory_levels.on_hand was ${keep} but the ledger summed to ${drift.ledger.onHand}; this count records the difference`,
    });
  }
  if (drift.activeReserved !== drift.ledger.reserved) {
    const delta = drift.activeReserved - drift.ledger.reserved;
    movements.push({
      kind: delta > 0 ? 'reserve' : 'release',
      delta,
      reason: 'correction',
      note: `reconcile: the ledger held ${drift.ledger.reserved} reserved (level ${drift.level?.reserved ?? 'missing'}) but active reservations hold ${drift.activeReserved}`,
    });
  }
  for (const m of movements) {
    await db('stock_movements').insert({ ...m, sku, location, on_hand_after: 0, reserved_after: 0 });
  }
  return drift;
}
