import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';

/**
 * The supplier API, both sides of it (the worker sends, scripts/mock-supplier.ts answers):
 *
 *   POST <apiUrl>
 *   Content-Type: application/json
 *   X-Api-Key: <the supplier's api key>
 *   Idempotency-Key: stockflow-po-<purchase order id>     (the same for every attempt)
 *   X-Stockflow-Timestamp: <unix seconds of this attempt>
 *   X-Stockflow-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed with the api key>
 *
 *   { "purchaseOrder": { "id", "number", "location", "lines": [{ "sku", "quantity" }] } }
 *
 * A 2xx answer is JSON of at most 64 KiB: { "status": "accepted" | "rejected", "reference"?,
 * "expectedDate"? (YYYY-MM-DD), "lines"?: [{ "sku", "quantity" }] (accepted quantities, each at
 * most the ordered one and only for skus on the order; missing lines are accepted as ordered),
 * "reason"? }. Any other 2xx answer is a protocol error.
 */

export const signatureHeader = 'x-stockflow-signature';
export const timestampHeader = 'x-stockflow-timestamp';
export const apiKeyHeader = 'x-api-key';
export const idempotencyHeader = 'idempotency-key';

export const idempotencyKeyOf = (purchaseOrderId: string) => `stockflow-po-${purchaseOrderId}`;

/** The request body: only what does not change between attempts, so every attempt sends the same bytes. */
export function orderBody(order: {
  id: string;
  number: string;
  location: string;
  lines: readonly { sku: string; quantity: number }[];
}): string {
  return JSON.stringify({
    purchaseOrder: {
      id: order.id,
      number: order.number,
      location: order.location,
      lines: order.lines.map((line) => ({ sku: line.sku, quantity: line.quantity })),
    },
  });
}

export function sign(apiKey: string, timestamp: string, body: string): string {
  return `v1=${createHmac('sha256', apiKey).update(`${timestamp}.${body}`).digest('hex')}`;
}

export function requestHeaders(input: {
  apiKey: string;
  purchaseOrderId: string;
  body: string;
  at: Date;
}): Record<string, string> {
  const timestamp = String(Math.floor(input.at.getTime() / 1000));
  return {
    [apiKeyHeader]: input.apiKey,
    [idempotencyHeader]: idempotencyKeyOf(input.purchaseOrderId),
    [timestampHeader]: timestamp,
    [signatureHeader]: sign(input.apiKey, timestamp, input.body),
  };
}

/** True when the signature is the api key's over this timestamp and body, and the timestamp is fresh. */
export function verifySignature(input: {
  apiKey: string;
  timestamp: string | undefined;
  signature: string | undefined;
  body: string;
  toleranceSeconds?: number;
  now?: number;
}): boolean {
  if (!input.timestamp || !input.signature || !/^\d{1,12}$/.test(input.timestamp)) return false;
  const age = Math.abs((input.now ?? Date.now()) / 1000 - Number(input.timestamp));
  if (age > (input.toleranceSeconds ?? 300)) return false;
  const expected = Buffer.from(sign(input.apiKey, input.timestamp, input.body));
  const given = Buffer.from(input.signature);
  return expected.length === given.length && timingSafeEqual(expected, given);
}

// Postgres text and jsonb cannot hold NUL: such an answer is outside the protocol, not a crash.
const text = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((value) => !value.includes('\u0000'), 'must not contain NUL characters');

export const supplierAnswerSchema = z.object({
  status: z.enum(['accepted', 'rejected']),
  reference: text(200).optional(),
  expectedDate: z.iso.date().optional(),
  lines: z
    .array(z.object({ sku: text(200), quantity: z.number().int().min(0).max(1_000_000_000) }))
    .max(500)
    .optional(),
  reason: z
    .string()
    .max(500)
    .refine((value) => !value.includes('\u0000'), 'must not contain NUL characters')
    .optional(),
});
export type SupplierAnswer = z.infer<typeof supplierAnswerSchema>;

/** The answer of a 2xx (its whole body), or why it cannot be read. */
export function parseAnswer(text: string | undefined): { answer: SupplierAnswer } | { error: string } {
  let json: unknown;
  try {
    json = JSON.parse(text ?? '');
  } catch {
    return { error: 'the answer is not JSON' };
  }
  const parsed = supplierAnswerSchema.safeParse(json);
  if (!parsed.success) {
    return {
      error: `the answer does not match the supplier protocol: ${parsed.error.issues
        .map((i) => `${i.path.join('.') || '(root)'} ${i.message}`)
        .join('; ')}`,
    };
  }
  return { answer: parsed.data };
}

/**
 * What is wrong with accepted quantities for an order's lines (a supplier's answer, or an
 * operator's resolution): a sku not on the order, a sku named twice, or more accepted than
 * ordered. Empty when they can be taken. Lines left out are accepted as ordered.
 */
export function acceptanceProblems(
  ordered: readonly { sku: string; quantity: number }[],
  accepted: readonly { sku: string; quantity: number }[],
): string[] {
  const quantities = new Map(ordered.map((line) => [line.sku, line.quantity]));
  const seen = new Set<string>();
  return accepted.flatMap((line) => {
    const quantity = quantities.get(line.sku);
    if (quantity === undefined) return [`accepts ${line.sku}, which is not on the order`];
    if (seen.has(line.sku)) return [`names ${line.sku} twice`];
    seen.add(line.sku);
    return line.quantity > quantity
      ? [`accepts ${line.quantity} of ${line.sku}, more than the ${quantity} ordered`]
      : [];
  });
}
