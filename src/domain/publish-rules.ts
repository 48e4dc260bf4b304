import type { Knex } from 'knex';
import type { Product } from '../schemas/products.js';
import { hasMainImage } from './images.js';

export interface RuleFailure {
  rule: string;
  message: string;
}

/** A publishing rule: returns why the product may not be published, or null when it may. */
type PublishRule = (db: Knex, product: Product) => RuleFailure | null | Promise<RuleFailure | null>;

const isoCurrencies = new Set(Intl.supportedValuesOf('currency'));

/** Every rule a product must pass to be (and stay) published. Later features add their own here. */
const publishRules: PublishRule[] = [
  (_db, p) => (p.name.trim().length > 0 ? null : { rule: 'name_present', message: 'name must not be blank' }),
  (_db, p) =>
    p.price.amount > 0 ? null : { rule: 'price_positive', message: 'price.amount must be greater than 0' },
  (_db, p) =>
    isoCurrencies.has(p.price.currency)
      ? null
      : { rule: 'currency_known', message: `price.currency ${p.price.currency} is not an ISO 4217 code` },
  async (db, p) =>
    (await hasMainImage(db, p.sku))
      ? null
      : { rule: 'main_image_present', message: 'a processed main image is required (role main)' },
];

/** Runs every rule and returns all failures, so the PMS can fix them in one go. */
export async function checkPublishRules(db: Knex, product: Product): Promise<RuleFailure[]> {
  const results = await Promise.all(publishRules.map((rule) => rule(db, product)));
  return results.filter((failure): failure is RuleFailure => failure !== null);
}
