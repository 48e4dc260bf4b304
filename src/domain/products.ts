import type { Knex } from 'knex';
import { isPgError, pgErrorCodes } from '../db/knex.js';
import { DomainError } from '../errors/domain-error.js';
import { appendEvent } from '../events/outbox.js';
import type { EventType } from '../schemas/event-types.js';
import { cursors } from '../schemas/fields.js';
import type { Product, ProductFields, ProductStatus } from '../schemas/products.js';
import { checkPublishRules } from './publish-rules.js';

interface ProductRow {
  sku: string;
  name: string;
  description: string | null;
  price_amount: number;
  price_currency: string;
  status: ProductStatus;
  attributes: Record<string, unknown>;
  version: number;
  created_at: Date;
  updated_at: Date;
  published_at: Date | null;
}

function toProduct(row: ProductRow): Product {
  return {
    sku: row.sku,
    name: row.name,
    description: row.description,
    price: { amount: row.price_amount, currency: row.price_currency },
    status: row.status,
    attributes: row.attributes,
    version: row.version,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    publishedAt: row.published_at?.toISOString() ?? null,
  };
}

function toColumns(fields: ProductFields) {
  return {
    name: fields.name,
    description: fields.description ?? null,
    price_amount: fields.price.amount,
    price_currency: fields.price.currency,
    attributes: JSON.stringify(fields.attributes ?? {}),
  };
}

const productEvent = (type: EventType, product: Product) => ({
  type,
  aggregate: { type: 'product', id: product.sku },
  data: { product },
});

export async function getProduct(db: Knex, sku: string): Promise<Product | undefined> {
  const row = await db<ProductRow>('products').where({ sku }).first();
  return row && toProduct(row);
}

/** Locks the product row for the rest of the transaction; throws not_found when it does not exist. */
async function lockProduct(db: Knex, sku: string): Promise<Product> {
  const row = await db<ProductRow>('products').where({ sku }).forUpdate().first();
  if (!row) throw new DomainError('not_found', `Product ${sku} does not exist`, { sku });
  return toProduct(row);
}

function assertVersion(product: Product, expectedVersion: number | undefined): void {
  if (expectedVersion !== undefined && product.version !== expectedVersion) {
    throw new DomainError(
      'version_conflict',
      `Product ${product.sku} is at version ${product.version}, not ${expectedVersion}`,
      { sku: product.sku, expectedVersion, currentVersion: product.version, current: product },
    );
  }
}

async function assertPublishable(db: Knex, product: Product): Promise<void> {
  const failures = await checkPublishRules(db, product);
  if (failures.length > 0) {
    throw new DomainError('publish_rules_failed', `Product ${product.sku} cannot be published`, {
      sku: product.sku,
      failures,
    });
  }
}

export async function createProduct(
  db: Knex,
  input: ProductFields & { sku: string; status: 'draft' | 'published' },
): Promise<Product> {
  const now = new Date().toISOString();
  if (input.status === 'published') {
    // Validate the would-be row before writing it, so a failing create leaves nothing behind.
    await assertPublishable(db, {
      sku: input.sku,
      name: input.name,
      description: input.description ?? null,
      price: input.price,
      status: 'published',
      attributes: input.attributes ?? {},
      version: 1,
      createdAt: now,
      updatedAt: now,
      publishedAt: now,
    });
  }
  let row: ProductRow | undefined;
  try {
    [row] = await db<ProductRow>('products')
      .insert({
        sku: input.sku,
        ...toColumns(input),
        status: input.status,
        published_at: input.status === 'published' ? db.fn.now() : null,
      } as never)
      .returning('*');
  } catch (error) {
    if (isPgError(error, pgErrorCodes.uniqueViolation, 'products_pkey')) {
      throw new DomainError('sku_taken', `A product with sku ${input.sku} already exists`, {
        sku: input.sku,
      });
    }
    throw error;
  }
  const product = toProduct(row!);
  await appendEvent(db, productEvent('product.created', product));
  return product;
}

/** Full update: fields left out are cleared. A published product must still pass the publish rules. */
export async function updateProduct(
  db: Knex,
  input: ProductFields & { sku: string; expectedVersion: number },
): Promise<Product> {
  const current = await lockProduct(db, input.sku);
  assertVersion(current, input.expectedVersion);
  const columns = toColumns(input);
  if (current.status === 'published') {
    await assertPublishable(db, {
      ...current,
      name: columns.name,
      description: columns.description,
      price: input.price,
      attributes: input.attributes ?? {},
    });
  }
  const [row] = await db<ProductRow>('products')
    .where({ sku: input.sku })
    .update(columns as never)
    .returning('*');
  const product = toProduct(row!);
  await appendEvent(db, productEvent('product.updated', product));
  return product;
}

/** Archives (soft-deletes) a product. Archiving an archived product changes nothing. */
export async function archiveProduct(
  db: Knex,
  input: { sku: string; expectedVersion?: number },
): Promise<Product> {
  const current = await lockProduct(db, input.sku);
  assertVersion(current, input.expectedVersion);
  if (current.status === 'archived') return current;
  const [row] = await db<ProductRow>('products')
    .where({ sku: input.sku })
    .update({ status: 'archived' })
    .returning('*');
  const product = toProduct(row!);
  await appendEvent(db, productEvent('product.archived', product));
  return product;
}

/** Publishes a product that passes every publish rule. Publishing a published product changes nothing. */
export async function publishProduct(
  db: Knex,
  input: { sku: string; expectedVersion?: number },
): Promise<Product> {
  const current = await lockProduct(db, input.sku);
  assertVersion(current, input.expectedVersion);
  if (current.status === 'published') return current;
  if (current.status === 'archived') {
    throw new DomainError('invalid_transition', `Product ${input.sku} is archived and cannot be published`, {
      sku: input.sku,
      currentStatus: current.status,
    });
  }
  await assertPublishable(db, current);
  const [row] = await db<ProductRow>('products')
    .where({ sku: input.sku })
    .update({ status: 'published', published_at: db.fn.now() } as never)
    .returning('*');
  const product = toProduct(row!);
  await appendEvent(db, productEvent('product.published', product));
  return product;
}

export interface ProductPage {
  items: Product[];
  nextCursor: string | null;
}

/** Keyset pagination in sku order; `cursor` is the last sku of the previous page (decoded by `cursors.product`). */
export async function listProducts(
  db: Knex,
  query: { status?: ProductStatus; q?: string; limit: number; cursor?: string },
): Promise<ProductPage> {
  const builder = db<ProductRow>('products')
    .orderBy('sku')
    .limit(query.limit + 1);
  if (query.status) builder.where('status', query.status);
  if (query.q) {
    const pattern = `%${query.q.replace(/[\\%_]/g, '\\$&')}%`;
    builder.where((w) => w.whereILike('sku', pattern).orWhereILike('name', pattern));
  }
  if (query.cursor !== undefined) builder.where('sku', '>', query.cursor);
  const rows = await builder;
  const items = rows.slice(0, query.limit).map(toProduct);
  const more = rows.length > query.limit;
  return { items, nextCursor: more ? cursors.product.encode(items[items.length - 1]!.sku) : null };
}
