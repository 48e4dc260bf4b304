import type { Knex } from 'knex';
import type { Level, StockStatus } from '../schemas/inventory.js';

export interface LevelRow {
  sku: string;
  location: string;
  on_hand: number;
  reserved: number;
  safety_stock: number;
  incoming: number;
  version: number;
  updated_at: Date;
}

export const availableOf = (row: Pick<LevelRow, 'on_hand' | 'reserved' | 'safety_stock'>) =>
  Math.max(0, row.on_hand - row.reserved - row.safety_stock);

export const toLevel = (row: LevelRow): Level => ({
  sku: row.sku,
  location: row.location,
  onHand: row.on_hand,
  reserved: row.reserved,
  available: availableOf(row),
  safetyStock: row.safety_stock,
  incoming: row.incoming,
  version: row.version,
  updatedAt: row.updated_at.toISOString(),
});

export interface LevelKey {
  sku: string;
  location: string;
}

export const levelKey = (k: LevelKey) => `${k.sku}\u0000${k.location}`;

type StatusRow = Omit<LevelRow, 'location' | 'updated_at'> & {
  location: string | null;
  updated_at: Date | null;
  active: boolean | null;
  priority: number | null;
};

function summarize(sku: string, rows: StatusRow[]): StockStatus {
  const locations = rows
    .filter((r) => r.location !== null)
    .map((r) => ({
      location: r.location!,
      active: r.active!,
      onHand: r.on_hand,
      reserved: r.reserved,
      available: availableOf(r),
      safetyStock: r.safety_stock,
      incoming: r.incoming,
      version: r.version,
      updatedAt: r.updated_at!.toISOString(),
    }));
  return { sku, totals: totalsOf(locations), locations };
}

function totalsOf(locations: StockStatus['locations']): StockStatus['totals'] {
  const sum = (f: (l: (typeof locations)[number]) => number) => locations.reduce((n, l) => n + f(l), 0);
  return {
    onHand: sum((l) => l.onHand),
    reserved: sum((l) => l.reserved),
    available: sum((l) => l.available),
    safetyStock: sum((l) => l.safetyStock),
    incoming: sum((l) => l.incoming),
  };
}

/** A sku's status narrowed to one location, as `getStockStatus(db, skus, location)` answers it. */
export function atLocation(status: StockStatus, location: string): StockStatus {
  const locations = status.locations.filter((l) => l.location === location);
  return { sku: status.sku, totals: totalsOf(locations), locations };
}

/** Current stock of these skus (optionally at one location), in the order asked; unknown skus are listed apart. */
export async function getStockStatus(
  db: Knex,
  skus: string[],
  location?: string,
): Promise<{ items: StockStatus[]; notFound: string[] }> {
  const { rows } = await db.raw<{ rows: (StatusRow & { product: string })[] }>(
    `select p.sku as product, l.*, c.active, c.priority
     from products p
     left join inventory_levels l on l.sku = p.sku and (?::text is null or l.location = ?::text)
     left join locations c on c.code = l.location
     where p.sku = any(?::text[])
     order by p.sku, c.priority, l.location`,
    [location ?? null, location ?? null, skus],
  );
  return group(skus, rows);
}

function group(skus: string[], rows: (StatusRow & { product: string })[]) {
  const bySku = new Map<string, StatusRow[]>();
  for (const row of rows) {
    const list = bySku.get(row.product) ?? [];
    list.push(row);
    bySku.set(row.product, list);
  }
  return {
    items: skus.filter((s) => bySku.has(s)).map((s) => summarize(s, bySku.get(s)!)),
    notFound: skus.filter((s) => !bySku.has(s)),
  };
}

/**
 * Stock as it was at `at`, recomputed from the ledger (every movement created at or before `at`).
 * The ledger does not record safety stock and incoming: those are today's values; `version` is
 * the number of movements up to `at`.
 */
export async function getStockAsOf(
  db: Knex,
  skus: string[],
  at: string,
  location?: string,
): Promise<{ items: StockStatus[]; notFound: string[] }> {
  const { rows } = await db.raw<{ rows: (StatusRow & { product: string })[] }>(
    `with ledger as (
       select m.sku, m.location,
              coalesce(sum(m.delta) filter (where m.kind not in ('reserve', 'release')), 0)::bigint as on_hand,
              coalesce(sum(m.delta) filter (where m.kind in ('reserve', 'release', 'commit')), 0)::bigint as reserved,
              max(m.created_at) as updated_at, count(*) as movements
       from stock_movements m
       where m.sku = any(?::text[]) and m.created_at <= ?::timestamptz and (?::text is null or m.location = ?::text)
       group by m.sku, m.location
     ), keys as (
       select sku, location from ledger
       union
       select sku, location from inventory_levels where sku = any(?::text[]) and (?::text is null or location = ?::text)
     )
     select p.sku as product, k.location, coalesce(g.on_hand, 0)::bigint as on_hand,
            coalesce(g.reserved, 0)::bigint as reserved, coalesce(l.safety_stock, 0)::bigint as safety_stock,
            coalesce(l.incoming, 0)::bigint as incoming, coalesce(g.movements, 0)::int as version,
            coalesce(g.updated_at, ?::timestamptz) as updated_at, c.active, c.priority
     from products p
     left join keys k on k.sku = p.sku
     left join ledger g on g.sku = k.sku and g.location = k.location
     left join inventory_levels l on l.sku = k.sku and l.location = k.location
     left join locations c on c.code = k.location
     where p.sku = any(?::text[])
     order by p.sku, c.priority, k.location`,
    [skus, at, location ?? null, location ?? null, skus, location ?? null, location ?? null, at, skus],
  );
  return group(skus, rows);
}
