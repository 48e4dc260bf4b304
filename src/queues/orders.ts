import { z } from 'zod';
import {
  createOrderPayload,
  linesOf,
  type OrderChange,
  orderNumberSchema,
  orderRefPayload,
  quantityLineSchema,
  returnPayload,
} from '../schemas/orders.js';
import { defineJob } from './job.js';

export const fulfillBody = z
  .object({
    /** Left out: everything still reserved. */
    lines: linesOf(quantityLineSchema).optional(),
  })
  .meta({ example: { lines: [{ sku: 'TSHIRT-RED-M', quantity: 1 }] } });
export const fulfillPayload = fulfillBody.extend({ orderNumber: orderNumberSchema });

export const orderJobs = {
  create: defineJob<OrderChange>()({ name: 'order.create', queue: 'orders', payload: createOrderPayload }),
  confirm: defineJob<OrderChange>()({ name: 'order.confirm', queue: 'orders', payload: orderRefPayload }),
  cancel: defineJob<OrderChange>()({ name: 'order.cancel', queue: 'orders', payload: orderRefPayload }),
  fulfill: defineJob<OrderChange>()({ name: 'order.fulfill', queue: 'orders', payload: fulfillPayload }),
  return: defineJob<OrderChange>()({ name: 'order.return', queue: 'orders', payload: returnPayload }),
};
