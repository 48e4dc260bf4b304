import type { Knex } from 'knex';
import type { Config } from '../config.js';
import { setJobContext } from '../db/job-context.js';
import { DomainError } from '../errors/domain-error.js';
import { RetryLaterError } from '../errors/retry-later-error.js';
import type { Logger } from '../log.js';
import type { SendResult } from '../queues/reorder.js';
import type { PurchaseOrder, PurchaseOrderAttempt } from '../schemas/purchase-orders.js';
import type { SecretBox } from '../secrets.js';
import {
  acknowledgePurchaseOrder,
  getPurchaseOrder,
  lockPurchaseOrder,
  recordOrderEvent,
  setStatus,
} from './purchase-orders.js';
import type { SupplierAnswer } from './reorder-supplier-protocol.js';
import { callSupplier, type SupplierCall } from './supplier-client.js';
import { getSupplierRow, type SupplierRow } from './suppliers.js';

async function recordAttempt(
  db: Knex,
  input: SupplierCall & {
    purchaseOrderId: string;
    jobId: string | undefined;
    outcome: PurchaseOrderAttempt['outcome'];
    error: string | null;
    retryAfterMs?: number;
  },
): Promise<number> {
  const { rows } = await db.raw<{ rows: { attempt: number }[] }>(
    `insert into purchase_order_attempts (purchase_order_id, attempt, job_id, started_at, duration_ms, status_code,
       outcome, error, response_excerpt, retry_after_ms)
     select ?, coalesce(max(attempt), 0) + 1, ?, ?, ?, ?, ?, ?, ?, ?
     from purchase_order_attempts where purchase_order_id = ?
     returning attempt`,
    [
      input.purchaseOrderId,
      input.jobId ?? null,
      input.startedAt.toISOString(),
      input.result.durationMs,
      input.result.statusCode ?? null,
      input.outcome,
      input.error ? input.error.slice(0, 1000) : null,
      input.excerpt,
      input.retryAfterMs ?? null,
      input.purchaseOrderId,
    ],
  );
  return rows[0]!.attempt;
}

/**
 * Whether an earlier attempt of the order may have reached the supplier without telling us what
 * became of it: no answer (a network error, a timeout) or a 5xx. A 408 or 429 is a definite "not
 * processed".
 */
async function hadUncertainAttempt(db: Knex, purchaseOrderId: string): Promise<boolean> {
  const row = await db('purchase_order_attempts')
    .where({ purchase_order_id: purchaseOrderId, outcome: 'retry' })
    .andWhere((w) => w.whereNull('status_code').orWhere('status_code', '>=', 500))
    .first('attempt');
  return row !== undefined;
}

/** Stores an acceptance (reference, date, accepted quantities) or a rejection. */
async function applyAnswer(
  db: Knex,
  order: PurchaseOrder,
  answer: SupplierAnswer,
): Promise<'acknowledged' | 'rejected'> {
  const accepted = new Map((answer.lines ?? []).map((l) => [l.sku, l.quantity]));
  const nothingAccepted = order.lines.every((line) => (accepted.get(line.sku) ?? line.quantity) === 0);
  if (answer.status === 'accepted' && !nothingAccepted) {
    await acknowledgePurchaseOrder(db, order, {
      ...answer,
      answer,
      event: { reason: answer.reason ?? null },
    });
    return 'acknowledged';
  }
  await setStatus(db, order.id, 'rejected', {
    supplier_reference: answer.reference ?? null,
    expected_date: answer.expectedDate ?? null,
    answer: JSON.stringify(answer),
    acknowledged_at: db.fn.now(),
    closed_at: db.fn.now(),
  });
  await recordOrderEvent(db, order.id, 'purchase_order.rejected', {
    reference: answer.reference ?? null,
    expectedDate: answer.expectedDate ?? null,
    reason: answer.reason ?? null,
  });
  return 'rejected';
}

/** The attempt recorded, and the order moved on as its verdict says. */
async function recordSend(
  trx: Knex.Transaction,
  order: PurchaseOrder,
  call: SupplierCall & { jobId: string | undefined; lastAttempt: boolean },
) {
  const { verdict } = call;
  const id = order.id;
  const row = await lockPurchaseOrder(trx, id);
  const common = { ...call, purchaseOrderId: id };
  if (row.status !== 'sent') {
    // Cancelled while the call was on its way: keep the attempt, change nothing else.
    const attempt = await recordAttempt(trx, {
      ...common,
      outcome: 'failed',
      error: `order was ${row.status} meanwhile`,
    });
    return { status: row.status, attempt };
  }
  if (verdict.kind === 'answer') {
    const status = await applyAnswer(trx, order, verdict.answer);
    const attempt = await recordAttempt(trx, { ...common, outcome: status, error: null });
    return { status, attempt };
  }
  if (verdict.kind === 'retry' && !call.lastAttempt) {
    const attempt = await recordAttempt(trx, {
      ...common,
      outcome: 'retry',
      error: verdict.error,
      retryAfterMs: verdict.retryAfterMs,
    });
    return { status: 'sent' as const, attempt, retry: verdict };
  }
  const attempt = await recordAttempt(trx, {
    ...common,
    outcome:
      verdict.kind === 'protocol_error'
        ? 'protocol_error'
        : verdict.kind === 'permanent' && verdict.refused
          ? 'refused'
          : 'failed',
    error: verdict.error,
  });
  const reason =
    verdict.kind === 'retry'
      ? 'retries_exhausted'
      : verdict.kind === 'protocol_error'
        ? 'protocol_error'
        : verdict.reason;
  const failure = {
    reason,
    statusCode: call.result.statusCode ?? null,
    error: verdict.error,
    excerpt: call.excerpt,
    attempts: attempt,
  };
  // Surely not at the supplier (or refused by it): failed, and its rules may order again.
  // Perhaps at the supplier: unresolved, and nothing orders this need again until an operator
  // says. A refusal after an attempt without an answer (a timeout, a 5xx) does not tell whether
  // that earlier request placed the order.
  const status =
    verdict.kind === 'permanent' && !(await hadUncertainAttempt(trx, id))
      ? ('failed' as const)
      : ('unresolved' as const);
  await setStatus(trx, id, status, {
    failure: JSON.stringify(failure),
    ...(status === 'failed' ? { closed_at: trx.fn.now() } : {}),
  });
  await recordOrderEvent(
    trx,
    id,
    status === 'failed' ? 'purchase_order.send_failed' : 'purchase_order.unresolved',
    { failure },
  );
  return { status, attempt, failure };
}

/**
 * Sends a purchase order to its supplier. Three steps, the remote call outside any transaction:
 * 1. (transaction) draft → sent, or go on with an order already sent by an earlier attempt;
 * 2. the signed POST (`callSupplier`), under an Idempotency-Key of the order alone;
 * 3. (transaction) the attempt is recorded (with a redacted excerpt of the answer) and the answer
 *    applied: acknowledged or rejected; a retry (RetryLaterError, so BullMQ backs off, or waits
 *    the supplier's Retry-After); `failed` for good (`send_failed`) when the order surely did not
 *    reach the supplier or it refused it (a 4xx other than 408/429, a refused address);
 *    `unresolved` (`send_unresolved`) when it may have reached it: a 2xx outside the protocol,
 *    the last attempt without a definite answer, or a refusal after an attempt without one. A
 *    failed order no longer counts as incoming, so its rule may order again; an unresolved one
 *    blocks its rules until an operator resolves or cancels it.
 */
export async function sendPurchaseOrder(
  db: Knex,
  input: { purchaseOrderId: string; jobId: string | undefined; lastAttempt: boolean },
  env: {
    config: Pick<Config, 'SUPPLIER_TIMEOUT_MS' | 'SUPPLIER_ALLOW_PRIVATE_TARGETS'>;
    secrets: SecretBox;
    log: Logger;
    /** Forgets the cached stock of these skus: a failed job's changes are not invalidated for it. */
    invalidateStock: (skus: string[]) => Promise<void>;
  },
): Promise<SendResult> {
  const id = input.purchaseOrderId;
  type Prepared = { done: SendResult } | { order: PurchaseOrder; supplier: SupplierRow };
  const prepared = await db.transaction(async (trx): Promise<Prepared> => {
    await setJobContext(trx, { actor: 'system', jobId: input.jobId });
    const row = await lockPurchaseOrder(trx, id);
    if (row.status === 'draft') {
      await setStatus(trx, id, 'sent', { sent_at: trx.fn.now() });
      await recordOrderEvent(trx, id, 'purchase_order.sent');
    } else if (row.status !== 'sent') {
      return { done: { purchaseOrderId: id, status: row.status } };
    }
    return {
      order: (await getPurchaseOrder(trx, id))!,
      supplier: (await getSupplierRow(trx, row.supplier_code))!,
    };
  });
  if ('done' in prepared) return prepared.done;
  const { order, supplier } = prepared;

  const call = await callSupplier(order, supplier, env);
  const recorded = await db.transaction(async (trx) => {
    await setJobContext(trx, { actor: 'system', jobId: input.jobId });
    return recordSend(trx, order, { ...call, jobId: input.jobId, lastAttempt: input.lastAttempt });
  });

  if ('retry' in recorded && recorded.retry) {
    throw new RetryLaterError(
      `attempt ${recorded.attempt} to send ${order.number} to ${supplier.code} failed: ${recorded.retry.error}`,
      recorded.retry.retryAfterMs,
    );
  }
  if ('failure' in recorded && recorded.failure) {
    // Incoming fell, and the failing job's changes are not invalidated by the worker.
    await env.invalidateStock(order.lines.map((line) => line.sku));
    const unresolved = recorded.status === 'unresolved';
    throw new DomainError(
      unresolved ? 'send_unresolved' : 'send_failed',
      unresolved
        ? `Supplier ${supplier.code} may have ${order.number}, but no answer could be taken: ${recorded.failure.error}`
        : `Supplier ${supplier.code} did not take ${order.number}: ${recorded.failure.error}`,
      { purchaseOrderId: id, supplier: supplier.code, ...recorded.failure },
    );
  }
  return {
    purchaseOrderId: id,
    status: recorded.status,
    attempt: recorded.attempt,
    statusCode: call.result.statusCode,
  };
}
