import type { Knex } from 'knex';
import {
  acknowledgePurchaseOrder,
  getPurchaseOrder,
  lockPurchaseOrder,
  type PurchaseOrder,
  recordOrderEvent,
  setStatus,
} from '../domain/purchase-orders.js';
import {
  acceptanceProblems,
  orderBody,
  parseAnswer,
  requestHeaders,
  type SupplierAnswer,
  signatureHeader,
} from '../domain/reorder-supplier-protocol.js';
import { getSupplierRow, type SupplierRow } from '../domain/suppliers.js';
import { DomainError } from '../errors/domain-error.js';
import { SupplierAttemptError } from '../errors/supplier-attempt-error.js';
import { setTransactionActor } from '../events/outbox.js';
import { refuseUrl } from '../outbound/address-guard.js';
import { redactedExcerpt } from '../outbound/excerpt.js';
import { type SendResult as HttpResult, maxBodyBytes, postJson } from '../outbound/http.js';
import type { PayloadOf } from '../queues/job.js';
import type { reorderJobs, SendResult } from '../queues/reorder.js';
import { parseRetryAfter } from '../webhooks/retry-schedule.js';
import type { JobContext } from './processor.js';

/**
 * Exponential backoff with "equal jitter": the n-th retry waits between half and all of
 * min(max, base × 2^(n−1)), so orders that failed together do not return together.
 */
export function supplierRetryDelayMs(
  attemptsMade: number,
  settings: { baseMs: number; maxMs: number },
  random = Math.random,
): number {
  const ceiling = Math.min(settings.maxMs, settings.baseMs * 2 ** Math.max(0, attemptsMade - 1));
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}

type Verdict =
  | { kind: 'answer'; answer: SupplierAnswer }
  | { kind: 'retry'; error: string; retryAfterMs?: number }
  | { kind: 'permanent'; reason: string; error: string; refused?: boolean }
  /** A 2xx the protocol cannot take: the supplier may have the order, on terms we do not know. */
  | { kind: 'protocol_error'; error: string };

/**
 * What one attempt came to: network errors, 408, 429 and 5xx are tried again; any other non-2xx is
 * final; a 2xx is the supplier's answer only when the whole of it (at most 64 KiB) is the
 * protocol's JSON and its accepted lines fit the order.
 */
function judge(result: HttpResult, order: PurchaseOrder): Verdict {
  const status = result.statusCode;
  if (result.refused)
    return { kind: 'permanent', reason: 'target_refused', error: result.error ?? 'refused', refused: true };
  if (status === undefined) return { kind: 'retry', error: result.error ?? 'no answer' };
  if (status >= 200 && status < 300) {
    if (result.bodyTooLarge) {
      return { kind: 'protocol_error', error: `the answer is larger than ${maxBodyBytes / 1024} KiB` };
    }
    // Cut off on the way: asked again, the supplier answers the same Idempotency-Key the same way.
    if (result.error !== undefined) return { kind: 'retry', error: `the answer broke off: ${result.error}` };
    const parsed = parseAnswer(result.fullBody);
    if ('error' in parsed) return { kind: 'protocol_error', error: parsed.error };
    const problems = acceptanceProblems(order.lines, parsed.answer.lines ?? []);
    if (problems.length > 0) {
      return { kind: 'protocol_error', error: `the answer ${problems.join('; ')}` };
    }
    return { kind: 'answer', answer: parsed.answer };
  }
  if (status === 408 || status === 429 || status >= 500) {
    return { kind: 'retry', error: `HTTP ${status}`, retryAfterMs: parseRetryAfter(result.retryAfter) };
  }
  return { kind: 'permanent', reason: `http_${status}`, error: `HTTP ${status}` };
}

async function recordAttempt(
  db: Knex,
  input: {
    purchaseOrderId: string;
    jobId: string | undefined;
    startedAt: Date;
    result: Pick<HttpResult, 'statusCode' | 'durationMs'>;
    /** The redacted excerpt of the answer (`redactedExcerpt`): never the answer itself. */
    excerpt: string | null;
    outcome: 'acknowledged' | 'rejected' | 'retry' | 'failed' | 'refused' | 'protocol_error';
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

/**
 * Sends a purchase order to its supplier. Three steps, the remote call outside any transaction:
 * 1. (transaction) draft → sent, or go on with an order already sent by an earlier attempt;
 * 2. the signed POST, with an Idempotency-Key derived from the order id alone, so a retry after a
 *    crash (or a lost answer) cannot place the order twice;
 * 3. (transaction) the attempt is recorded (with a redacted excerpt of the answer) and the answer
 *    applied: acknowledged or rejected; a retry (thrown, so BullMQ backs off); `failed` for good
 *    (`send_failed`) when the order surely did not reach the supplier or it refused it (a 4xx other
 *    than 408/429, a refused address); `unresolved` (`send_unresolved`) when it may have reached
 *    it: a 2xx outside the protocol, the last attempt without a definite answer, or a refusal
 *    after an attempt without one. A failed order
 *    no longer counts as incoming, so its rule may order again; an unresolved one blocks its rules
 *    until an operator resolves or cancels it.
 */
export async function sendPurchaseOrder(
  ctx: JobContext,
  payload: PayloadOf<typeof reorderJobs.send>,
): Promise<SendResult> {
  const { deps, job, log } = ctx;
  const { db, config } = deps;
  const id = payload.purchaseOrderId;
  type Prepared = { done: SendResult } | { order: PurchaseOrder; supplier: SupplierRow };
  const prepared = await db.transaction(async (trx): Promise<Prepared> => {
    await setTransactionActor(trx, 'system', job.id);
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

  const startedAt = new Date();
  let result: HttpResult;
  let verdict: Verdict;
  let apiKey: string | undefined;
  // What we sent that must never come back to a reader of the attempt (an echoing URL would).
  let sentSecrets: string[] = [];
  try {
    apiKey = deps.secrets.open(supplier.api_key, { column: 'suppliers.api_key', row: supplier.code });
  } catch (error) {
    log.error({ err: error, supplier: supplier.code }, 'supplier api key cannot be opened');
  }
  const refusal = refuseUrl(supplier.api_url, config.SUPPLIER_ALLOW_PRIVATE_TARGETS);
  if (apiKey === undefined || refusal) {
    result = { durationMs: 0 };
    verdict = refusal
      ? { kind: 'permanent', reason: 'target_refused', error: `the api url ${refusal}`, refused: true }
      : {
          kind: 'permanent',
          reason: 'api_key_unreadable',
          error: 'the stored api key cannot be opened (SECRETS_KEY)',
        };
  } else {
    const body = orderBody(order);
    const headers = requestHeaders({ apiKey, purchaseOrderId: id, body, at: startedAt });
    sentSecrets = [apiKey, headers[signatureHeader]!, headers[signatureHeader]!.replace(/^v1=/, '')];
    result = await postJson({
      url: supplier.api_url,
      body,
      headers,
      timeoutMs: config.SUPPLIER_TIMEOUT_MS,
      allowPrivate: config.SUPPLIER_ALLOW_PRIVATE_TARGETS,
      allowPrivateSetting: 'SUPPLIER_ALLOW_PRIVATE_TARGETS',
      userAgent: 'Stockflow-Purchasing/1',
    });
    verdict = judge(result, order);
  }
  const excerpt = redactedExcerpt(result.fullBody ?? result.body, sentSecrets);
  // An error may quote the answer (the skus it named): bounded and redacted like the excerpt.
  if (verdict.kind !== 'answer') {
    verdict = { ...verdict, error: redactedExcerpt(verdict.error, sentSecrets, 500) ?? '' };
  }
  const isLast = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);

  const recorded = await db.transaction(async (trx) => {
    await setTransactionActor(trx, 'system', job.id);
    const row = await lockPurchaseOrder(trx, id);
    const common = { purchaseOrderId: id, jobId: job.id, startedAt, result, excerpt };
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
    if (verdict.kind === 'retry' && !isLast) {
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
      statusCode: result.statusCode ?? null,
      error: verdict.error,
      excerpt,
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
  });

  const outcome = {
    purchaseOrderId: id,
    status: recorded.status,
    attempt: recorded.attempt,
    statusCode: result.statusCode,
  };
  if ('retry' in recorded && recorded.retry) {
    throw new SupplierAttemptError(
      `attempt ${recorded.attempt} to send ${order.number} to ${supplier.code} failed: ${recorded.retry.error}`,
      recorded.retry.retryAfterMs,
    );
  }
  if ('failure' in recorded && recorded.failure) {
    // The job fails, so the processor will not invalidate what it changed: incoming fell.
    await deps.cache.invalidate({ stock: order.lines.map((line) => line.sku) });
    const unresolved = recorded.status === 'unresolved';
    throw new DomainError(
      unresolved ? 'send_unresolved' : 'send_failed',
      unresolved
        ? `Supplier ${supplier.code} may have ${order.number}, but no answer could be taken: ${recorded.failure.error}`
        : `Supplier ${supplier.code} did not take ${order.number}: ${recorded.failure.error}`,
      {
        purchaseOrderId: id,
        supplier: supplier.code,
        ...recorded.failure,
      },
    );
  }
  return outcome;
}
