import { z } from 'zod';
import type { Product } from '../domain/products.js';
import { defineJob } from './job.js';

const isoCurrencies = new Set(Intl.supportedValuesOf('currency'));

export const skuSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9._-]{1,64}$/,
    'sku must be 1-64 characters of letters, digits, dot, underscore or hyphen',
  )
  // They would name the current or parent directory in every URL that carries the sku.
  .refine((sku) => sku !== '.' && sku !== '..', 'sku must not be . or ..')
  .meta({ example: 'TSHIRT-RED-M' });

/** ISO 4217, from the ICU data of the runtime (kept current with Node.js releases). */
export const currencySchema = z
  .string()
  .refine((c) => isoCurrencies.has(c), 'currency must be an ISO 4217 code such as EUR')
  .meta({ example: 'EUR' });

export const moneySchema = z.object({
  amount: z.number().int('amount must be an integer in minor units').min(0).max(Number.MAX_SAFE_INTEGER),
  currency: currencySchema,
});

const productFields = {
  name: z.string().trim().min(1).max(300),
  description: z.string().max(10_000).nullish(),
  price: moneySchema,
  // Values arrive as parsed JSON (a body, a job payload), so any value is JSON; z.json()'s recursive
  // schema would only add a self-reference the OpenAPI document cannot express.
  attributes: z.record(z.string().max(200), z.unknown()).optional(),
};

export const versionSchema = z.number().int().min(1);

// Compatibility: payloads only gain optional fields; a worker must accept jobs queued by the
// previous release, so never make a field required or narrow a type without a migration note.
export const createProductPayload = z.object({
  sku: skuSchema,
  ...productFields,
  status: z.enum(['draft', 'published']).default('draft'),
});

export const updateProductPayload = z.object({
  sku: skuSchema,
  expectedVersion: versionSchema,
  ...productFields,
});

export const productRefPayload = z.object({
  sku: skuSchema,
  expectedVersion: versionSchema.optional(),
});

export const productJobs = {
  create: defineJob<Product>()({ name: 'product.create', queue: 'products', payload: createProductPayload }),
  update: defineJob<Product>()({ name: 'product.update', queue: 'products', payload: updateProductPayload }),
  archive: defineJob<Product>()({ name: 'product.archive', queue: 'products', payload: productRefPayload }),
  publish: defineJob<Product>()({ name: 'product.publish', queue: 'products', payload: productRefPayload }),
};
