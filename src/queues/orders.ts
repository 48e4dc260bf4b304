import { z } from 'zod';
import { noteSchema } from '../schemas/inventory.js';
import { locationCodeSchema } from '../schemas/locations.js';
import {
  createOrderPayload,
  linesOf,
  type OrderChange,
  orderNumberSchema,
  orderRefPayload,
  quantityLineSchema,
} from '../schemas/orders.js';
import { defineJob } from './job.js';

export const fulfillBody = z
  .object({
    /** Left out: everything still reserved. */
    lines: linesOf(quantityLineSchema).optional(),
  })
  .meta({ example: { lines: [{ sku: 'TSHIRT-RED-M', quantity: 1 }] } });
export const fulfillPayload = fulfillBody.extend({ orderNumber: orderNumberSchema });

const returnFields = {
  lines: linesOf(quantityLineSchema),
  /** true: the units go back on hand (return movements); false: the return is only recorded. */
  restock: z.boolean(),
  /** Where restocked units go; left out: back where they were committed from. */
  location: locationCodeSchema.optional(),
  note: noteSchema.optional(),
};
const locationOnlyWithRestock = {
  check: (r: { restock: boolean; location?: string }) => r.restock || r.location === undefined,
  issue: {
    path: ['location'],
    message: 'only with restock: true',
    when: (payload: z.core.ParsePayload) => typeof payload.value === 'object' && payload.value !== null,
  },
};
export const returnBody = z
  .object(returnFields)
  .refine(locationOnlyWithRestock.check, locationOnlyWithRestock.issue)
  .meta({ example: { lines: [{ sku: 'TSHIRT-RED-M', quantity: 1 }], restock: true } });
export const returnPayload = z
  .object({ orderNumber: orderNumberSchema, ...returnFields })
  .refine(locationOnlyWithRestock.check, locationOnlyWithRestock.issue);

export const orderJobs = {
  create: defineJob<OrderChange>()({ name: 'order.create', queue: 'orders', payload: createOrderPayload }),
  confirm: defineJob<OrderChange>()({ name: 'order.confirm', queue: 'orders', payload: orderRefPayload }),
  cancel: defineJob<OrderChange>()({ name: 'order.cancel', queue: 'orders', payload: orderRefPayload }),
  fulfill: defineJob<OrderChange>()({ name: 'order.fulfill', queue: 'orders', payload: fulfillPayload }),
  return: defineJob<OrderChange>()({ name: 'order.return', queue: 'orders', payload: returnPayload }),
};
