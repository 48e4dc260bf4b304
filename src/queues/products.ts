import { z } from 'zod';
import {
  createProductPayload,
  type Product,
  productFields,
  skuSchema,
  versionSchema,
} from '../schemas/products.js';
import { defineJob } from './job.js';

// Compatibility: payloads only gain optional fields; a worker must accept jobs queued by the
// previous release, so never make a field required or narrow a type without a migration note.
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
