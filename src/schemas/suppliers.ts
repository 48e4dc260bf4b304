import { z } from 'zod';
import { codeSchema, httpUrlSchema } from './fields.js';

export const supplierCodeSchema = codeSchema(
  'supplier',
  'a code of 1-64 letters, digits, dot, underscore or hyphen',
);

const exampleSupplier = {
  code: 'acme',
  name: 'ACME Textiles',
  apiUrl: 'https://api.acme.example/purchase-orders',
  leadTimeDays: 5,
  minOrderQuantity: 10,
  orderMultiple: 6,
  active: true,
  version: 1,
  createdAt: '2026-12-02T10:00:00.000Z',
  updatedAt: '2026-12-02T10:00:00.000Z',
};

/** A supplier as the API shows it: the api key is sealed at rest and never returned. */
export const supplierSchema = z
  .object({
    code: z.string(),
    name: z.string(),
    apiUrl: z.string(),
    leadTimeDays: z.number().int(),
    minOrderQuantity: z.number().int(),
    orderMultiple: z.number().int(),
    active: z.boolean(),
    version: z.number().int(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ example: exampleSupplier });

const units = z.number().int('must be a whole number of units').min(1).max(1_000_000_000);
/** What a supplier's settings route sets (the api key apart). `apiUrl` is a credential too: see updateSupplier. */
export const supplierFields = {
  name: z.string().trim().min(1).max(200),
  apiUrl: httpUrlSchema,
  leadTimeDays: z.number().int('must be a whole number of days').min(1).max(365),
  minOrderQuantity: units.default(1),
  orderMultiple: units.default(1),
  active: z.boolean().default(true),
};
export type SupplierFields = z.output<z.ZodObject<typeof supplierFields>>;
export type Supplier = z.output<typeof supplierSchema>;
