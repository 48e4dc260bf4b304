import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { refuseUrl } from '../outbound/address-guard.js';
import { redactedExcerpt } from '../outbound/excerpt.js';
import { type SendResult as HttpResult, maxBodyBytes, postJson } from '../outbound/http.js';
import type { PurchaseOrder } from '../schemas/purchase-orders.js';
import type { SecretBox } from '../secrets.js';
import {
  acceptanceProblems,
  orderBody,
  parseAnswer,
  requestHeaders,
  type SupplierAnswer,
  signatureHeader,
} from './reorder-supplier-protocol.js';
import type { SupplierRow } from './suppliers.js';

/** What one send attempt came to. */
export type Verdict =
  | { kind: 'answer'; answer: SupplierAnswer }
  | { kind: 'retry'; error: string; retryAfterMs?: number }
  | { kind: 'permanent'; reason: string; error: string; refused?: boolean }
  /** A 2xx the protocol cannot take: the supplier may have the order, on terms we do not know. */
  | { kind: 'protocol_error'; error: string };

export interface SupplierCall {
  startedAt: Date;
  result: Pick<HttpResult, 'statusCode' | 'durationMs'>;
  verdict: Verdict;
  /** The redacted excerpt of the answer (`redactedExcerpt`): never the answer itself. */
  excerpt: string | null;
}

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
    return { kind: 'retry', error: `HTTP ${status}`, retryAfterMs: result.retryAfterMs };
  }
  return { kind: 'permanent', reason: `http_${status}`, error: `HTTP ${status}` };
}

/**
 * One signed POST of a purchase order to its supplier's API (outside any transaction), with an
 * Idempotency-Key derived from the order id alone, so a retry after a crash (or a lost answer)
 * cannot place the order twice. An api key that cannot be opened or an api url the address guard
 * refuses is a permanent failure without a request. Whatever the answer quotes of what we sent
 * (the key, the signature) is redacted from the excerpt and the error.
 */
export async function callSupplier(
  order: PurchaseOrder,
  supplier: SupplierRow,
  env: {
    config: Pick<Config, 'SUPPLIER_TIMEOUT_MS' | 'SUPPLIER_ALLOW_PRIVATE_TARGETS'>;
    secrets: SecretBox;
    log: Logger;
  },
): Promise<SupplierCall> {
  const { config } = env;
  const startedAt = new Date();
  let result: HttpResult;
  let verdict: Verdict;
  let apiKey: string | undefined;
  // What we sent that must never come back to a reader of the attempt (an echoing URL would).
  let sentSecrets: string[] = [];
  try {
    apiKey = env.secrets.open(supplier.api_key, { column: 'suppliers.api_key', row: supplier.code });
  } catch (error) {
    // The attempt fails for good (below); the cause is for the operator, not the attempt's record.
    env.log.error({ err: error, supplier: supplier.code }, 'supplier api key cannot be opened');
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
    const headers = requestHeaders({ apiKey, purchaseOrderId: order.id, body, at: startedAt });
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
  return { startedAt, result, verdict, excerpt };
}
