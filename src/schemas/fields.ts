import { z } from 'zod';

/**
 * Field schemas several resources share, declared once: codes that name things in URLs (skus,
 * locations, suppliers, order numbers), instants Postgres can hold, the http(s) URLs we are asked
 * to call (webhook endpoints, supplier APIs, image sources) and the keyset cursors of every list.
 * Each refuses at intake (400 naming the field) what Postgres would refuse later with a 500.
 */

/**
 * A code that names a thing in URLs (`/products/<sku>`): 1-64 letters, digits, dot, underscore or
 * hyphen, and never `.` or `..`, which would name the current or parent directory. `shape` ends
 * the message of a bad one: `sku must be <shape>`.
 */
export const codeSchema = (field: string, shape: string) =>
  z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,64}$/, `${field} must be ${shape}`)
    .refine((code) => code !== '.' && code !== '..', `${field} must not be . or ..`);

/** The instants both Postgres `timestamptz` and JavaScript hold, in UTC: years 1 to 9999. */
const earliest = Date.parse('0001-01-01T00:00:00Z');
const latest = Date.parse('9999-12-31T23:59:59.999Z');

/**
 * An ISO 8601 date-time with offset (`2026-11-26T10:00:00Z`, `…+01:00`) between
 * 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z. Year 0 does not exist for Postgres.
 */
export const instantSchema = z.iso
  .datetime({ offset: true, message: 'must be an ISO 8601 date-time, e.g. 2026-11-26T10:00:00Z' })
  .refine((text) => {
    const at = Date.parse(text);
    return at >= earliest && at <= latest;
  }, 'must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z');

/** Whitespace, control characters and backslashes: never part of a URL as sent (they must be percent-encoded). */
const hasNonUrlCharacter = (text: string) =>
  /[\s\\]/.test(text) || [...text].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);

/**
 * An absolute `http://` or `https://` URL of at most 2000 characters, as the URL guard
 * (src/outbound/address-guard.ts) and the HTTP client read it (WHATWG URL). The scheme is
 * case-insensitive and stored in lower case (`HTTPS://x` is `https://x`; the rest as given);
 * leading, trailing or inner spaces, control characters, backslashes and the forms a WHATWG
 * parser repairs (`https:host`, `https:///host`) are refused, so what is stored is what is called.
 * Whether the host may be called (public address, no credentials) is the guard's question.
 */
export const httpUrlSchema = z
  .string()
  .max(2000)
  .refine((text) => !hasNonUrlCharacter(text), {
    message: 'must not contain spaces, control characters or backslashes',
    abort: true,
  })
  // overwrite, not transform: the schema stays a string schema, so OpenAPI examples survive.
  .overwrite((text) => text.replace(/^[A-Za-z][A-Za-z0-9+.-]*:/, (scheme) => scheme.toLowerCase()))
  .refine(
    (url) => /^https?:\/\/[^/]/.test(url) && URL.canParse(url),
    'must be an absolute http:// or https:// URL',
  )
  .meta({ format: 'uri', example: 'https://example.com/path' });

/**
 * A keyset cursor: a list answers `nextCursor` = base64url of `<kind>:<position>`, and takes it
 * back as `cursor` through `schema`, which yields the position or refuses (400) any text it did
 * not hand out, so no crafted cursor reaches a query.
 */
export interface KeysetCursor<T> {
  encode(position: T): string;
  /** The `cursor` query parameter: decodes to the position. */
  schema: z.ZodType<T, string>;
}

function keysetCursor<T>(kind: string, position: z.ZodType<T, string>, text: (p: T) => string) {
  const message = 'must be a nextCursor from an earlier page';
  return {
    encode: (p: T) => Buffer.from(`${kind}:${text(p)}`, 'utf8').toString('base64url'),
    schema: z
      .string()
      .max(300)
      .transform((cursor, ctx) => {
        const decoded = /^[A-Za-z0-9_-]+$/.test(cursor)
          ? Buffer.from(cursor, 'base64url').toString('utf8')
          : '';
        const parsed = decoded.startsWith(`${kind}:`)
          ? position.safeParse(decoded.slice(kind.length + 1))
          : undefined;
        if (!parsed?.success) {
          ctx.addIssue({ code: 'custom', message });
          return z.NEVER;
        }
        return parsed.data;
      })
      .describe('the nextCursor of the page before'),
  } satisfies KeysetCursor<T>;
}

/** A bigint identity id: 1 to 15 digits. */
const serialId = z
  .string()
  .regex(/^[1-9]\d{0,14}$/)
  .transform(Number);
/** A key in text order (a sku): up to 64 characters Postgres text can hold. */
const textKey = z
  .string()
  .min(1)
  .max(64)
  .refine((key) => !key.includes('\u0000') && !key.includes('\uFFFD'));
const alertPosition = z
  .string()
  .transform((text) => text.split('|'))
  .pipe(z.tuple([instantSchema, z.uuid()]))
  .transform(([at, id]) => ({ at, id }));

/**
 * A report's keyset cursor: the sort key of the last row of a page, a tuple checked by `key`
 * (each report declares its own, so a cursor of one report is refused by another).
 */
export function reportCursor<T>(report: string, key: z.ZodType<T, unknown>) {
  const json = z.string().transform((text, ctx) => {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      ctx.addIssue({ code: 'custom', message: 'not JSON' });
      return z.NEVER;
    }
  });
  return keysetCursor(`report.${report}`, json.pipe(key) as z.ZodType<T, string>, (p: T) =>
    JSON.stringify(p),
  );
}

/** Every keyset cursor of the API: products (sku order), orders, ledger movements, reorder rules, purchase orders, alerts. */
export const cursors = {
  product: keysetCursor('p', textKey, (sku: string) => sku),
  order: keysetCursor('o', serialId, String),
  movement: keysetCursor('m', serialId, String),
  reorderRule: keysetCursor('r', serialId, String),
  purchaseOrder: keysetCursor('po', serialId, String),
  alert: keysetCursor('a', alertPosition, (p: { at: string; id: string }) => `${p.at}|${p.id}`),
};
