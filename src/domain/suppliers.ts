import type { Knex } from 'knex';
import { isPgError, pgErrorCodes } from '../db/knex.js';
import { DomainError } from '../errors/domain-error.js';
import { appendEvent } from '../events/outbox.js';
import type { EventType } from '../schemas/event-types.js';
import { urlForEvents } from '../schemas/event-urls.js';
import type { Supplier, SupplierFields } from '../schemas/suppliers.js';

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

const originOf = (url: string): string | undefined => {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
};

/**
 * `fullUrl`: the apiUrl as stored (admin readers). Otherwise (pms keys) as events carry it
 * (`urlForEvents`: origin and path), since its query may hold the supplier's credentials, which are
 * the shop's, not the PMS's.
 */
export const toSupplier = (row: SupplierRow, view: { fullUrl: boolean }): Supplier => ({
  code: row.code,
  name: row.name,
  apiUrl: view.fullUrl ? row.api_url : urlForEvents(row.api_url),
  leadTimeDays: row.lead_time_days,
  minOrderQuantity: row.min_order_quantity,
  orderMultiple: row.order_multiple,
  active: row.active,
  version: row.version,
  createdAt: row.created_at.toISOString(),
  updatedAt: row.updated_at.toISOString(),
});

const supplierEvent = (type: EventType, row: SupplierRow) => ({
  type,
  aggregate: { type: 'supplier', id: row.code },
  // The outbox redacts apiUrl (an eventUrlSchema field) as every URL in an event.
  data: { supplier: toSupplier(row, { fullUrl: true }) },
});

const columns = (fields: Omit<SupplierFields, 'apiUrl'>) => ({
  name: fields.name,
  lead_time_days: fields.leadTimeDays,
  min_order_quantity: fields.minOrderQuantity,
  order_multiple: fields.orderMultiple,
  active: fields.active,
});

/** `sealedApiKey` is the api key sealed by the deps' secret box: the plain key never reaches the database. */
export async function createSupplier(
  db: Knex,
  input: SupplierFields & { code: string; sealedApiKey: string },
): Promise<SupplierRow> {
  let row: SupplierRow | undefined;
  try {
    [row] = await db<SupplierRow>('suppliers')
      .insert({ code: input.code, api_key: input.sealedApiKey, api_url: input.apiUrl, ...columns(input) })
      .returning('*');
  } catch (error) {
    if (isPgError(error, pgErrorCodes.uniqueViolation, 'suppliers_pkey')) {
      throw new DomainError('supplier_taken', `A supplier with code ${input.code} already exists`, {
        code: input.code,
      });
    }
    throw error;
  }
  await appendEvent(db, supplierEvent('supplier.created', row!));
  return row!;
}

/**
 * Replaces a supplier's settings. Its credentials, the apiUrl (where its api key is sent) and the
 * api key, change only when given, and only when `mayChangeCredentials` (an admin key): otherwise
 * `forbidden`. An apiUrl equal to the stored one, or to the one readers are shown, is no change.
 * A new origin (scheme, host, port) needs a new api key in the same call (`api_key_required`):
 * the stored key was given for the old origin, and would otherwise be sent to the new one.
 *
 * Resolves with the row and the ids of the supplier's reorder rules, to be checked again (an
 * activated supplier or a shorter lead time may make them due without any movement). The rules
 * stay locked until the change commits: a check of one queued before the commit waits for it
 * (`checkRule` locks its rule first), and so sees the new settings.
 */
export async function updateSupplier(
  db: Knex,
  input: Omit<SupplierFields, 'apiUrl'> & {
    code: string;
    apiUrl?: string;
    sealedApiKey?: string;
    expectedVersion?: number;
    mayChangeCredentials: boolean;
  },
): Promise<{ row: SupplierRow; ruleIds: number[] }> {
  // Rules before the supplier, as a check locks them (its rule, then the supplier's key for a new
  // draft): the other order could deadlock with a check in flight.
  const rules = await db('reorder_rules')
    .where({ supplier_code: input.code })
    .orderBy('id')
    .forShare()
    .select('id');
  const current = await db<SupplierRow>('suppliers').where({ code: input.code }).forUpdate().first();
  if (!current) {
    throw new DomainError('not_found', `Supplier ${input.code} does not exist`, { supplier: input.code });
  }
  const newUrl =
    input.apiUrl === undefined ||
    input.apiUrl === current.api_url ||
    input.apiUrl === urlForEvents(current.api_url)
      ? undefined
      : input.apiUrl;
  const changing = [
    ...(newUrl !== undefined ? ['apiUrl'] : []),
    ...(input.sealedApiKey !== undefined ? ['apiKey'] : []),
  ];
  if (changing.length > 0 && !input.mayChangeCredentials) {
    throw new DomainError(
      'forbidden',
      `Changing a supplier's ${changing.join(' or ')} needs an admin key: they are the shop's credentials`,
      { supplier: input.code, scope: 'admin', fields: changing },
    );
  }
  if (newUrl !== undefined && input.sealedApiKey === undefined) {
    const from = originOf(current.api_url);
    const to = originOf(newUrl);
    if (from !== to) {
      throw new DomainError(
        'api_key_required',
        `The apiUrl moves supplier ${input.code} from ${from} to ${to}: send its api key for ${to} in the same request`,
        { supplier: input.code, from, to },
      );
    }
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
    .update({
      ...columns(input),
      ...(newUrl !== undefined ? { api_url: newUrl } : {}),
      ...(input.sealedApiKey !== undefined ? { api_key: input.sealedApiKey } : {}),
    })
    .returning('*');
  await appendEvent(db, supplierEvent('supplier.updated', row!));
  return { row: row!, ruleIds: rules.map((rule) => Number(rule.id)) };
}

export async function getSupplierRow(db: Knex, code: string): Promise<SupplierRow | undefined> {
  return (await db<SupplierRow>('suppliers').where({ code }).first()) as SupplierRow | undefined;
}

export async function listSuppliers(db: Knex, view: { fullUrl: boolean }): Promise<Supplier[]> {
  const rows = (await db<SupplierRow>('suppliers').orderBy('code')) as SupplierRow[];
  return rows.map((row) => toSupplier(row, view));
}
