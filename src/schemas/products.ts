import { z } from 'zod';
import { codeSchema } from './fields.js';

const isoCurrencies = new Set(Intl.supportedValuesOf('currency'));

export const skuSchema = codeSchema(
  'sku',
  '1-64 characters of letters, digits, dot, underscore or hyphen',
).meta({ example: 'TSHIRT-RED-M' });

/** ISO 4217, from the ICU data of the runtime (kept current with Node.js releases). */
export const currencySchema = z
  .string()
  .refine((c) => isoCurrencies.has(c), 'currency must be an ISO 4217 code such as EUR')
  .meta({ example: 'EUR' });

/** Money in the currency's minor unit: `{ amount: 1999, currency: 'EUR' }` is 19.99 EUR. */
export const moneySchema = z.object({
  amount: z.number().int('amount must be an integer in minor units').min(0).max(Number.MAX_SAFE_INTEGER),
  currency: currencySchema,
});
export type Money = z.output<typeof moneySchema>;

/** An expected version (compare-and-set): versions start at 1. */
export const versionSchema = z.number().int().min(1);

const productStatuses = ['draft', 'published', 'archived'] as const;
export type ProductStatus = (typeof productStatuses)[number];

/** What the PMS sets on a product (create, update, the inbound `product.upserted`). */
export const productFields = {
  name: z.string().trim().min(1).max(300),
  description: z.string().max(10_000).nullish(),
  price: moneySchema,
  // Values arrive as parsed JSON (a body, a job payload), so any value is JSON; z.json()'s recursive
  // schema would only add a self-reference the OpenAPI document cannot express.
  attributes: z.record(z.string().max(200), z.unknown()).optional(),
};
export type ProductFields = z.output<z.ZodObject<typeof productFields>>;

// Compatibility: payloads only gain optional fields; a worker must accept jobs queued by the
// previous release, so never make a field required or narrow a type without a migration note.
/** A new product: the body of `POST /api/pms/products`, the inbound `product.upserted`, the job. */
export const createProductPayload = z.object({
  sku: skuSchema,
  ...productFields,
  status: z.enum(['draft', 'published']).default('draft'),
});

/** A product as the API answers it and as events carry it. */
export const productSchema = z
  .object({
    sku: z.string(),
    name: z.string(),
    description: z.string().nullable(),
    price: moneySchema,
    status: z.enum(productStatuses),
    attributes: z.record(z.string(), z.unknown()),
    version: z.number().int(),
    createdAt: z.string(),
    updatedAt: z.string(),
    publishedAt: z.string().nullable(),
  })
  .meta({ id: 'Product' });
export type Product = z.output<typeof productSchema>;
