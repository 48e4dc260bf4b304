import { z } from 'zod';
import { instantSchema } from '../schemas/fields.js';
import { locationCodeSchema } from '../schemas/locations.js';
import { skuSchema } from '../schemas/products.js';
import type { SkuFilter } from './ledger-replay.js';

/**
 * The parameters reports share. Each report picks those that make sense for it; zod lists every
 * bad one in one 400 problem (src/api/errors.ts).
 */

const dayMs = 86_400_000;
/** The window when `from` is left out: 30 days before `to`. */
const defaultWindowDays = 30;
/** The longest window a report reads. */
const maxWindowDays = 3660;

/** `sku=ABC-1` is that sku; `sku=ABC-*` every sku starting with `ABC-`. */
const skuParam = z
  .string()
  .max(65)
  .transform((text, ctx): SkuFilter => {
    const prefix = text.endsWith('*');
    const body = prefix ? text.slice(0, -1) : text;
    const checked = skuSchema.safeParse(body);
    if (!checked.success && !(prefix && body === '')) {
      ctx.addIssue({ code: 'custom', message: 'must be a sku, or a sku prefix followed by *' });
      return z.NEVER;
    }
    return prefix ? { skuPrefix: body } : { sku: body };
  })
  .meta({ example: 'TSHIRT-*' })
  .describe('a sku, or a prefix ending in * (TSHIRT-*)');

export const limitParam = z.coerce.number().int().min(1).max(1000).default(100);

export const windowParams = {
  from: instantSchema
    .optional()
    .describe(`start of the window (inclusive); default: ${defaultWindowDays} days before to`),
  to: instantSchema.optional().describe('end of the window (exclusive); default: now'),
};

export const filterParams = {
  location: locationCodeSchema.optional(),
  sku: skuParam.optional(),
};

export interface Window {
  from: Date;
  to: Date;
}

/** The window a report reads: `to` defaults to now, `from` to 30 days before it. */
export function windowOf(query: { from?: string; to?: string }, now = new Date()): Window {
  const to = query.to ? new Date(query.to) : now;
  const from = query.from ? new Date(query.from) : new Date(to.getTime() - defaultWindowDays * dayMs);
  return { from, to };
}

/** Refines a query with a window: from before to, at most maxWindowDays long (each named). */
export function checkWindow(query: { from?: string; to?: string }, ctx: z.RefinementCtx): void {
  const { from, to } = windowOf(query);
  if (from.getTime() >= to.getTime()) {
    ctx.addIssue({ code: 'custom', path: ['from'], message: 'must be before to' });
  } else if (to.getTime() - from.getTime() > maxWindowDays * dayMs) {
    ctx.addIssue({
      code: 'custom',
      path: ['to'],
      message: `must be at most ${maxWindowDays} days after from`,
    });
  }
}

/**
 * Whole UTC days covering a window: day buckets are whole days (from rounds down, to up). The days
 * (`YYYY-MM-DD`) bind to date columns; the instants they start at (`fromStart`, `toStart`) to
 * timestamptz ones: Postgres compares a timestamptz with a date at the date's midnight in the
 * session's TimeZone, not UTC's.
 */
export function daysOf(window: Window): { fromDay: string; toDay: string; fromStart: Date; toStart: Date } {
  const start = Math.floor(window.from.getTime() / dayMs) * dayMs;
  const end = Math.ceil(window.to.getTime() / dayMs) * dayMs;
  return {
    fromDay: new Date(start).toISOString().slice(0, 10),
    toDay: new Date(end).toISOString().slice(0, 10),
    fromStart: new Date(start),
    toStart: new Date(end),
  };
}

/** Number of days of a window, as a fraction (for rates per day). */
export const windowDays = (w: Window) => (w.to.getTime() - w.from.getTime()) / dayMs;
