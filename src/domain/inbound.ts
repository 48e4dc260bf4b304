import type { Knex } from 'knex';
import { appendEvent } from '../events/outbox.js';
import type { InboundEvent } from '../schemas/inbound.js';
import { cancelOrder, createOrder } from './orders.js';
import { archiveProduct, createProduct, publishProduct, updateProduct } from './products.js';
import { adjustStock, countStock } from './stock.js';

/** What an inbound webhook's job did. */
export interface InboundOutcome {
  webhookId: string;
  type: InboundEvent['type'];
  /** False: a product version not newer than the last applied (a sync conflict), or a redelivery. */
  applied: boolean;
  reason?: 'stale_version' | 'already_applied';
  /** What the domain function returned (the same as the matching REST route's job result). */
  result?: unknown;
}

export interface InboundDelivery {
  webhookId: string;
  jobId: string;
  applied: boolean;
  appliedAt: string;
}

/** The dedupe record of a webhook-id, if one was applied. */
export async function findInboundDelivery(db: Knex, webhookId: string): Promise<InboundDelivery | undefined> {
  const row = await db('inbound_deliveries').where({ webhook_id: webhookId }).first();
  return (
    row && {
      webhookId: row.webhook_id,
      jobId: row.job_id,
      applied: row.applied,
      appliedAt: row.applied_at.toISOString(),
    }
  );
}

/**
 * Serialises the product deliveries of one sku (its version row is locked) and tells whether
 * `version` is newer than the last applied PMS version; a stale one is recorded as a
 * `product.sync_conflict` event with both versions.
 */
async function newerPmsVersion(
  db: Knex,
  event: InboundEvent & { data: { sku: string } },
  version: number,
): Promise<boolean> {
  const sku = event.data.sku;
  const inserted = await db.raw<{ rowCount: number }>(
    `insert into inbound_product_versions (sku, pms_version, webhook_id) values (?, ?, ?) on conflict do nothing`,
    [sku, version, event.webhookId],
  );
  if (inserted.rowCount === 1) return true;
  const row = await db('inbound_product_versions').where({ sku }).forUpdate().first('pms_version');
  if (version > row.pms_version) {
    await db('inbound_product_versions')
      .where({ sku })
      .update({ pms_version: version, webhook_id: event.webhookId, applied_at: db.fn.now() });
    return true;
  }
  await appendEvent(db, {
    type: 'product.sync_conflict',
    aggregate: { type: 'product', id: sku },
    data: {
      sku,
      webhookId: event.webhookId,
      webhookType: event.type,
      incomingVersion: version,
      appliedVersion: row.pms_version,
    },
  });
  return false;
}

/** Creates the product, or replaces its fields (published: publishes it, under the publish rules). */
async function upsertProduct(db: Knex, data: Extract<InboundEvent, { type: 'product.upserted' }>['data']) {
  const { version: _pmsVersion, ...fields } = data;
  const current = await db('products').where({ sku: data.sku }).forUpdate().first('version', 'status');
  if (!current) return createProduct(db, fields);
  const updated = await updateProduct(db, { ...fields, expectedVersion: current.version });
  if (fields.status === 'published' && updated.status === 'draft') {
    return publishProduct(db, { sku: data.sku });
  }
  return updated;
}

async function dispatch(db: Knex, event: InboundEvent): Promise<{ applied: boolean; result?: unknown }> {
  switch (event.type) {
    case 'product.upserted':
      if (!(await newerPmsVersion(db, event, event.data.version))) return { applied: false };
      return { applied: true, result: await upsertProduct(db, event.data) };
    case 'product.archived':
      if (event.data.version !== undefined && !(await newerPmsVersion(db, event, event.data.version))) {
        return { applied: false };
      }
      return { applied: true, result: await archiveProduct(db, { sku: event.data.sku }) };
    case 'inventory.adjusted':
      return { applied: true, result: await adjustStock(db, event.data) };
    case 'inventory.counted':
      return { applied: true, result: await countStock(db, event.data) };
    case 'order.created':
      return { applied: true, result: await createOrder(db, event.data) };
    case 'order.cancelled':
      return { applied: true, result: await cancelOrder(db, event.data) };
  }
}

/**
 * Applies one verified PMS webhook through the same domain functions as the REST routes. The
 * dedupe record (webhook-id) is written first, in the same transaction as the effect: a
 * redelivery that reaches a worker again (after Redis lost the job, say) changes nothing.
 */
export async function applyInbound(db: Knex, event: InboundEvent, jobId: string): Promise<InboundOutcome> {
  const claimed = await db.raw<{ rowCount: number }>(
    `insert into inbound_deliveries (webhook_id, job_id, type, occurred_at, applied, outcome)
     values (?, ?, ?, ?, false, '{}') on conflict do nothing`,
    [event.webhookId, jobId, event.type, event.timestamp],
  );
  if (claimed.rowCount === 0) {
    return { webhookId: event.webhookId, type: event.type, applied: false, reason: 'already_applied' };
  }
  const { applied, result } = await dispatch(db, event);
  const outcome: InboundOutcome = {
    webhookId: event.webhookId,
    type: event.type,
    applied,
    ...(applied ? { result } : { reason: 'stale_version' as const }),
  };
  await db('inbound_deliveries')
    .where({ webhook_id: event.webhookId })
    .update({ applied, outcome: JSON.stringify(outcome) });
  return outcome;
}
