import { z } from 'zod';

const int = z.number().int();

export const purchaseOrderStatuses = [
  'draft',
  'sent',
  'acknowledged',
  'rejected',
  'failed',
  'unresolved',
  'partially_received',
  'received',
  'cancelled',
] as const;
export type PurchaseOrderStatus = (typeof purchaseOrderStatuses)[number];

/** Every term of an order quantity, as the PO line stores them. */
const quantityTermsSchema = z.object({
  basis: z.enum(['reorder_quantity', 'max_level']),
  reorderPoint: int,
  available: int,
  /** Incoming from other purchase orders (this line's own quantity is left out). */
  incoming: int,
  reorderQuantity: int.nullable(),
  maxLevel: int.nullable(),
  /** reorderQuantity, or maxLevel − (available + incoming). */
  rawQuantity: int,
  minOrderQuantity: int,
  orderMultiple: int,
  quantity: int,
});
export type QuantityTerms = z.output<typeof quantityTermsSchema>;

const purchaseOrderLineSchema = z.object({
  sku: z.string(),
  location: z.string(),
  ruleId: int,
  quantity: int,
  acceptedQuantity: int.nullable(),
  receivedQuantity: int,
  /** What this line still adds to the level's incoming. */
  outstanding: int,
  explanation: quantityTermsSchema.extend({ text: z.string() }),
});

const purchaseOrderAttemptSchema = z.object({
  attempt: int,
  jobId: z.string().nullable(),
  startedAt: z.string(),
  durationMs: int,
  statusCode: int.nullable(),
  outcome: z.enum(['acknowledged', 'rejected', 'retry', 'failed', 'refused', 'protocol_error']),
  error: z.string().nullable(),
  responseExcerpt: z.string().nullable(),
  retryAfterMs: int.nullable(),
});

const examplePurchaseOrder = {
  id: '0b6c1f5e-5a0e-4f43-9a52-7d0a3c1e2b11',
  number: 'PO-000001',
  supplier: 'acme',
  location: 'default',
  status: 'acknowledged',
  supplierReference: 'ACME-1001',
  expectedDate: '2026-12-07',
  failure: null,
  cancelReason: null,
  sentAt: '2026-12-02T10:00:05.200Z',
  acknowledgedAt: '2026-12-02T10:00:05.260Z',
  closedAt: null,
  version: 3,
  createdAt: '2026-12-02T10:00:05.100Z',
  updatedAt: '2026-12-02T10:00:05.260Z',
  lines: [
    {
      sku: 'TSHIRT-M',
      location: 'default',
      ruleId: 1,
      quantity: 96,
      acceptedQuantity: 96,
      receivedQuantity: 0,
      outstanding: 96,
      explanation: {
        basis: 'max_level',
        reorderPoint: 33,
        available: 29,
        incoming: 0,
        reorderQuantity: null,
        maxLevel: 120,
        rawQuantity: 91,
        minOrderQuantity: 10,
        orderMultiple: 6,
        quantity: 96,
        text: 'available 29 + incoming 0 = 29 ≤ reorder point 33; max level 120 − (available 29 + incoming 0) = 91; at least the minimum order 10 → 91; rounded up to a multiple of 6 → 96',
      },
    },
  ],
  attempts: [
    {
      attempt: 1,
      jobId: 'reorder-send-0b6c1f5e-5a0e-4f43-9a52-7d0a3c1e2b11',
      startedAt: '2026-12-02T10:00:05.210Z',
      durationMs: 48,
      statusCode: 200,
      outcome: 'acknowledged',
      error: null,
      responseExcerpt: '{"status":"accepted","reference":"ACME-1001","expectedDate":"2026-12-07"}',
      retryAfterMs: null,
    },
  ],
};

/** A purchase order as the API shows it and its jobs return it. */
export const purchaseOrderSchema = z
  .object({
    id: z.string(),
    number: z.string(),
    supplier: z.string(),
    location: z.string(),
    status: z.enum(purchaseOrderStatuses),
    supplierReference: z.string().nullable(),
    expectedDate: z.string().nullable(),
    failure: z.record(z.string(), z.unknown()).nullable(),
    cancelReason: z.string().nullable(),
    sentAt: z.string().nullable(),
    acknowledgedAt: z.string().nullable(),
    closedAt: z.string().nullable(),
    version: int,
    createdAt: z.string(),
    updatedAt: z.string(),
    lines: z.array(purchaseOrderLineSchema),
    attempts: z.array(purchaseOrderAttemptSchema).optional(),
  })
  .meta({ example: examplePurchaseOrder });
export type PurchaseOrderLine = z.output<typeof purchaseOrderLineSchema>;
export type PurchaseOrderAttempt = z.output<typeof purchaseOrderAttemptSchema>;
export type PurchaseOrder = z.output<typeof purchaseOrderSchema>;
