import { z } from 'zod';
import { codeSchema } from './fields.js';
import { quantitySchema } from './inventory.js';
import { locationCodeSchema } from './locations.js';
import { skuSchema } from './products.js';

export const supplierCodeSchema = codeSchema(
  'supplier',
  'a code of 1-64 letters, digits, dot, underscore or hyphen',
);

// Compatibility: payloads only gain optional fields; a worker must accept jobs queued by the
// previous release, so never make a field required or narrow a type without a migration note.
/** A reorder rule as the PMS sets it: the body of its route and the payload of its job. */
export const reorderRulePayload = z
  .object({
    sku: skuSchema,
    location: locationCodeSchema,
    supplier: supplierCodeSchema,
    /** A fixed point in units, or `auto`: computed from the demand of the window at serviceLevel. */
    reorderPoint: z.union([
      z.number().int('must be a whole number of units').min(0).max(1_000_000_000),
      z.literal('auto'),
    ]),
    serviceLevel: z.number().min(0.5).max(0.9999).optional(),
    windowDays: z.number().int().min(1).max(365).optional(),
    reorderQuantity: quantitySchema.optional(),
    maxLevel: quantitySchema.optional(),
  })
  .superRefine((rule, ctx) => {
    const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
    if ((rule.reorderQuantity === undefined) === (rule.maxLevel === undefined)) {
      issue('reorderQuantity', 'give exactly one of reorderQuantity and maxLevel');
    }
    if (rule.reorderPoint === 'auto') {
      if (rule.serviceLevel === undefined) issue('serviceLevel', 'is required with reorderPoint "auto"');
    } else {
      if (rule.serviceLevel !== undefined) issue('serviceLevel', 'only applies to reorderPoint "auto"');
      if (rule.windowDays !== undefined) issue('windowDays', 'only applies to reorderPoint "auto"');
      if (rule.maxLevel !== undefined && rule.maxLevel <= rule.reorderPoint) {
        issue('maxLevel', 'must be above reorderPoint');
      }
    }
  });
export type ReorderRuleInput = z.output<typeof reorderRulePayload>;

/** An operator's decision on an unresolved purchase order (the body of its `resolve` route). */
export const resolutionSchema = z.discriminatedUnion('action', [
  z.object({
    /** The supplier has the order: take these terms (accepted quantities at most as ordered). */
    action: z.literal('acknowledge'),
    reference: z.string().min(1).max(200).optional(),
    expectedDate: z.iso.date().optional(),
    lines: z
      .array(z.object({ sku: skuSchema, quantity: z.number().int().min(0).max(1_000_000_000) }))
      .min(1)
      .max(500)
      .optional(),
  }),
  /** Send it again: one more round of attempts under the same Idempotency-Key. */
  z.object({ action: z.literal('resend') }),
]);

export type Resolution = z.output<typeof resolutionSchema>;
