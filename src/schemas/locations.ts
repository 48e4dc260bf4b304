import { z } from 'zod';
import { codeSchema } from './fields.js';

export const locationCodeSchema = codeSchema(
  'location',
  'a code of 1-64 letters, digits, dot, underscore or hyphen',
).meta({ example: 'default' });

/** What the PMS sets on a location (create, update). */
export const locationFields = {
  name: z.string().trim().min(1).max(200),
  /** Allocation order: lower first. */
  priority: z.number().int().min(0).max(1_000_000).default(100),
  /** An inactive location is skipped by allocation and gets no levels for new products. */
  active: z.boolean().default(true),
};
export type LocationFields = z.output<z.ZodObject<typeof locationFields>>;

/** A place that holds stock. Allocation tries active locations by priority (lower first), then code. */
export const locationSchema = z
  .object({
    code: z.string(),
    name: z.string(),
    priority: z.number().int(),
    active: z.boolean(),
    version: z.number().int(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: 'Location' });
export type Location = z.output<typeof locationSchema>;
