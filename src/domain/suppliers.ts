import type { Knex } from 'knex';
import { isPgError, pgErrorCodes } from '../db/knex.js';
import { DomainError } from '../errors.js';
import type { EventType } from '../events/catalogue.js';
import { appendEvent } from '../events/outbox.js';

/** What a supplier's settings route sets (the api key apart). */
export interface SupplierFields {
  name: string;
  apiUrl: string;
  leadTimeDays: number;
  minOrderQuantity: number;
  orderMultiple: number;
  active: boolean;
}

/** A supplier as the API shows it: the api key is sealed at rest and never returned. */
export interface Supplier extends SupplierFields {
  code: string;
  version: number;
  createdAt: string;
  updatedAt: string;
}

export interface SupplierRow {
  code: string;
  name: string;
  api_url: string;
  api_key: string;
  lead_time_days: number;
  min_order_quantity: number;
  order_multiple: number;
  active: boolean;
  version: number;
  created_at: Date;
  updated_at: Date;
}

export const toSupplier = (row: SupplierRow): Supplier => ({
  code: row.code,
  name: row.name,
  apiUrl: row.api_url,
  leadTimeDays: row.lead_time_days,
  minOrderQuantity: row.min_order_quantity,
  orderMultiple: row.order_multiple,
  active: row.active,
  version: row.version,
  createdAt: row.created_at.toISOString(),
  updatedAt: row.updated_at.toISOString(),
});

const supplierEvent = (type: EventType, supplier: Supplier) => ({
  type,
  aggregate: { type: 'supplier', id: supplier.code },
  data: { supplier },
});

const columns = (fields: SupplierFields) => ({
  name: fields.name,
  api_url: fields.apiUrl,
  lead_time_days: fields.leadTimeDays,
  min_order_quantity: fields.minOrderQuantity,
  order_multiple: fields.orderMultiple,
  active: fields.active,
});

/** `sealedApiKey` is the api key sealed by the deps' secret box: the plain key never reaches the database. */
export async function createSupplier(
  db: Knex,
  input: SupplierFields & { code: string; sealedApiKey: string },
): Promise<Supplier> {
  let row: SupplierRow | undefined;
  try {
    [row] = await db<SupplierRow>('suppliers')
      .insert({ code: input.code, api_key: input.sealedApiKey, ...columns(input) })
      .returning('*');
  } catch (error) {
    if (isPgError(error, pgErrorCodes.uniqueViolation, 'suppliers_pkey')) {
      throw new DomainError('supplier_taken', `A supplier with code ${input.code} already exists`, {
        code: input.code,
      });
    }
    throw error;
  }
  const supplier = toSupplier(row!);
  await appendEvent(db, supplierEvent('supplier.created', supplier));
  return supplier;
}

/** Replaces a supplier's settings; the api key only when a new one is given. */
export async function updateSupplier(
  db: Knex,
  input: SupplierFields & { code: string; sealedApiKey?: string; expectedVersion?: number },
): Promise<Supplier> {
  const current = await db<SupplierRow>('suppliers').where({ code: input.code }).forUpdate().first();
  if (!current) {
    throw new DomainError('not_found', `Supplier ${input.code} does not exist`, { supplier: input.code });
  }
  if (input.expectedVersion !== undefined && current.version !== input.expectedVersion) {
    throw new DomainError(
      'version_conflict',
      `Supplier ${input.code} is at version ${current.version}, not ${input.expectedVersion}`,
      { supplier: input.code, expectedVersion: input.expectedVersion, currentVersion: current.version },
    );
  }
  const [row] = await db<SupplierRow>('suppliers')
    .where({ code: input.code })
    .update({ ...columns(input), ...(input.sealedApiKey ? { api_key: input.sealedApiKey } : {}) })
    .returning('*');
  const supplier = toSupplier(row!);
  await appendEvent(db, supplierEvent('supplier.updated', supplier));
  return supplier;
}

export async function getSupplierRow(db: Knex, code: string): Promise<SupplierRow | undefined> {
  return (await db<SupplierRow>('suppliers').where({ code }).first()) as SupplierRow | undefined;
}

export async function listSuppliers(db: Knex): Promise<Supplier[]> {
  const rows = (await db<SupplierRow>('suppliers').orderBy('code')) as SupplierRow[];
  return rows.map(toSupplier);
}
