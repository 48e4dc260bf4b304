import { archiveProduct, createProduct, publishProduct, updateProduct } from '../domain/products.js';
import { applyOnce } from './group-commit.js';
import type { QueueHandlers } from './processor.js';

export const productHandlers = {
  'product.create': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => createProduct(trx, payload)),
  'product.update': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => updateProduct(trx, payload)),
  'product.archive': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => archiveProduct(trx, payload)),
  'product.publish': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => publishProduct(trx, payload)),
} satisfies QueueHandlers<'products'>;
