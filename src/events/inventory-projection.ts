import type { LogEvent } from '../schemas/events.js';
import type { Projection, ProjectionDifference } from './projections.js';

/**
 * Inventory levels rebuilt from the `stock.moved` events the ledger trigger writes for every
 * movement, by folding their deltas: reserve/release move `reserved`, commit moves both, every
 * other kind moves `on_hand`. A replay from seq > 1 starts each level from the after-values of its
 * last movement before that seq.
 */
interface Movement {
  sku: string;
  location: string;
  kind: string;
  delta: number;
}

function movementOf(event: LogEvent): Movement | undefined {
  const m = event.data as Partial<Movement>;
  return typeof m.sku === 'string' &&
    typeof m.location === 'string' &&
    typeof m.kind === 'string' &&
    Number.isInteger(m.delta)
    ? (m as Movement)
    : undefined;
}

const movesOnHand = (kind: string) => kind !== 'reserve' && kind !== 'release';
const movesReserved = (kind: string) => kind === 'reserve' || kind === 'release' || kind === 'commit';

export const inventoryLevelsProjection: Projection = {
  name: 'inventory_levels',
  eventTypes: ['stock.moved'],

  async prepare(db, schema, scope) {
    await db.raw(
      `create table ??.inventory_levels (
         sku text not null, location text not null, on_hand bigint not null, reserved bigint not null,
         primary key (sku, location))`,
      [schema],
    );
    if (scope.from <= 1) return;
    await db.raw(
      `insert into ??.inventory_levels (sku, location, on_hand, reserved)
       select distinct on (data->>'sku', data->>'location')
              data->>'sku', data->>'location', (data->>'onHandAfter')::bigint, (data->>'reservedAfter')::bigint
       from events where type = 'stock.moved' and seq < ?
       order by data->>'sku', data->>'location', seq desc`,
      [schema, scope.from],
    );
  },

  async apply(db, schema, events) {
    const levels = new Map<string, { sku: string; location: string; onHand: number; reserved: number }>();
    const movements: Movement[] = [];
    let skipped = 0;
    for (const event of events) {
      const movement = movementOf(event);
      if (movement) movements.push(movement);
      else skipped += 1;
    }
    if (movements.length === 0) return { skipped };
    const keys = [...new Set(movements.map((m) => JSON.stringify([m.sku, m.location])))].map(
      (k) => JSON.parse(k) as [string, string],
    );
    const { rows } = await db.raw<{
      rows: { sku: string; location: string; on_hand: number; reserved: number }[];
    }>(
      `select l.sku, l.location, l.on_hand, l.reserved
       from ??.inventory_levels l
       join unnest(?::text[], ?::text[]) as k(sku, location) on k.sku = l.sku and k.location = l.location`,
      [schema, keys.map((k) => k[0]), keys.map((k) => k[1])],
    );
    for (const r of rows) {
      levels.set(JSON.stringify([r.sku, r.location]), {
        sku: r.sku,
        location: r.location,
        onHand: r.on_hand,
        reserved: r.reserved,
      });
    }
    for (const m of movements) {
      const key = JSON.stringify([m.sku, m.location]);
      const level = levels.get(key) ?? { sku: m.sku, location: m.location, onHand: 0, reserved: 0 };
      if (movesOnHand(m.kind)) level.onHand += m.delta;
      if (movesReserved(m.kind)) level.reserved += m.delta;
      levels.set(key, level);
    }
    await db
      .withSchema(schema)
      .table('inventory_levels')
      .insert(
        [...levels.values()].map((l) => ({
          sku: l.sku,
          location: l.location,
          on_hand: l.onHand,
          reserved: l.reserved,
        })),
      )
      .onConflict(['sku', 'location'])
      .merge();
    return { skipped };
  },

  async diff(db, schema, scope) {
    // A live level with no movement at all is explained by the initialization triggers only while it is zero.
    const { rows } = await db.raw<{
      rows: {
        sku: string;
        location: string;
        kind: ProjectionDifference['kind'];
        live_on_hand: number | null;
        live_reserved: number | null;
        on_hand: number | null;
        reserved: number | null;
      }[];
    }>(
      `select coalesce(l.sku, r.sku) as sku, coalesce(l.location, r.location) as location,
              case when l.sku is null then 'missing_live' when r.sku is null then 'missing_replayed' else 'changed' end as kind,
              l.on_hand as live_on_hand, l.reserved as live_reserved, r.on_hand, r.reserved
       from public.inventory_levels l
       full join ??.inventory_levels r on r.sku = l.sku and r.location = l.location
       where l.sku is null
          or (r.sku is null and ? and (l.on_hand <> 0 or l.reserved <> 0))
          or (r.sku is not null and (l.on_hand <> r.on_hand or l.reserved <> r.reserved))
       order by 1, 2`,
      [schema, scope.complete],
    );
    return rows.map((row) => {
      const key = `${row.sku}@${row.location}`;
      if (row.kind !== 'changed') return { key, kind: row.kind };
      const fields = [
        { field: 'on_hand', live: row.live_on_hand, replayed: row.on_hand },
        { field: 'reserved', live: row.live_reserved, replayed: row.reserved },
      ].filter((f) => f.live !== f.replayed);
      return { key, kind: 'changed' as const, fields };
    });
  },
};
