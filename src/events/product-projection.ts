import type { Knex } from 'knex';
import type { LogEvent } from '../schemas/events.js';
import type { Projection, ProjectionDifference } from './projections.js';

/**
 * Products rebuilt from product events. Every product event carries the whole product after the
 * change (`data.product`), so the last event of a sku is its expected row.
 */
const compared = [
  'name',
  'description',
  'price_amount',
  'price_currency',
  'status',
  'attributes',
  'version',
  'created_at',
  'updated_at',
  'published_at',
] as const;
// Events carry ISO times (milliseconds); live rows keep microseconds.
const timeColumns = new Set(['created_at', 'updated_at', 'published_at']);

interface ProductSnapshot {
  sku: string;
  name: string;
  description: string | null;
  price: { amount: number; currency: string };
  status: string;
  attributes: Record<string, unknown>;
  version: number;
  createdAt: string;
  updatedAt: string;
  publishedAt: string | null;
}

function snapshotOf(event: LogEvent): ProductSnapshot | undefined {
  const product = event.data.product as ProductSnapshot | undefined;
  return product && typeof product.sku === 'string' && product.price ? product : undefined;
}

export const productsProjection: Projection = {
  name: 'products',
  eventTypes: ['product.*'],

  async prepare(db, schema) {
    await db.raw(`create table ??.products (like public.products including defaults, primary key (sku))`, [
      schema,
    ]);
  },

  async apply(db, schema, events) {
    const last = new Map<string, ProductSnapshot>();
    let skipped = 0;
    for (const event of events) {
      const product = snapshotOf(event);
      if (product) last.set(product.sku, product);
      else skipped += 1;
    }
    if (last.size === 0) return { skipped };
    const rows = [...last.values()].map((p) => ({
      sku: p.sku,
      name: p.name,
      description: p.description,
      price_amount: p.price.amount,
      price_currency: p.price.currency,
      status: p.status,
      attributes: JSON.stringify(p.attributes ?? {}),
      version: p.version,
      created_at: p.createdAt,
      updated_at: p.updatedAt,
      published_at: p.publishedAt,
    }));
    await db.withSchema(schema).table('products').insert(rows).onConflict('sku').merge();
    return { skipped };
  },

  async diff(db: Knex, schema, scope) {
    const value = (side: 'l' | 'r', column: string) =>
      timeColumns.has(column) ? `date_trunc('milliseconds', ${side}.${column})` : `${side}.${column}`;
    const changed = compared.map((c) => `${value('l', c)} is distinct from ${value('r', c)}`).join(' or ');
    const { rows } = await db.raw<{
      rows: { sku: string; kind: ProjectionDifference['kind']; live: unknown; replayed: unknown }[];
    }>(
      `select coalesce(l.sku, r.sku) as sku,
              case when l.sku is null then 'missing_live' when r.sku is null then 'missing_replayed' else 'changed' end as kind,
              to_jsonb(l) as live, to_jsonb(r) as replayed
       from public.products l
       full join ??.products r on r.sku = l.sku
       where (l.sku is null) or (r.sku is null and ?) or (r.sku is not null and (${changed}))
       order by 1`,
      [schema, scope.complete],
    );
    return rows.map((row) => {
      if (row.kind !== 'changed') return { key: row.sku, kind: row.kind };
      const live = row.live as Record<string, unknown>;
      const replayed = row.replayed as Record<string, unknown>;
      const fields = compared
        .filter((c) => {
          const a = live[c];
          const b = replayed[c];
          if (timeColumns.has(c)) {
            return (
              (a ? new Date(a as string).getTime() : null) !== (b ? new Date(b as string).getTime() : null)
            );
          }
          return JSON.stringify(a) !== JSON.stringify(b);
        })
        .map((field) => ({ field, live: live[field], replayed: replayed[field] }));
      return { key: row.sku, kind: 'changed' as const, fields };
    });
  },
};
