import { z } from 'zod';

/**
 * URLs in events. Events reach every `pms` key, the live streams and `*` webhook subscribers, and
 * a URL someone configured may carry a credential: userinfo (`https://user:pass@…`), a query token
 * (`?token=…`, a presigned `?X-Amz-Signature=…`) or a fragment. Every URL an event names goes
 * through `urlForEvents`, the one redaction: the outbox applies it to each field the catalogue
 * declares with `eventUrlSchema`, and that schema refuses anything it would still change.
 */

/** Stands for a URL that does not parse: nothing of it is kept. */
export const invalidUrlForEvents = '(invalid URL)';

const relativeBase = 'http://relative.invalid';

/**
 * `scheme://host[:port]/path` of an absolute URL: no userinfo, query or fragment. A relative
 * reference (a local `/media/…` path, `upload`) keeps its path; a network-path reference
 * (`//host/…`) is treated like an absolute URL; a URL without a host (`mailto:`) keeps its scheme
 * only. Idempotent: what it returns, it returns unchanged.
 */
export function urlForEvents(url: string): string {
  const text = asParserReadsIt(url);
  let parsed: URL;
  try {
    parsed = new URL(text, relativeBase);
  } catch {
    return invalidUrlForEvents;
  }
  const networkPath = /^[\\/]{2}/.test(text);
  if (!URL.canParse(text) && !networkPath) {
    // Starts like an absolute URL yet does not parse as one: nothing of it is trusted.
    if (/^[a-z][a-z\d+.-]*:/i.test(text)) return invalidUrlForEvents;
    return asParserReadsIt(text.split(/[?#]/, 1)[0]!);
  }
  const scheme = networkPath ? '' : parsed.protocol;
  return parsed.host ? `${scheme}//${parsed.host}${parsed.pathname}` : parsed.protocol;
}

/** Without what the URL parser ignores: tabs and newlines anywhere, controls and spaces around. */
function asParserReadsIt(url: string): string {
  const text = url.replace(/[\t\n\r]/g, '');
  let start = 0;
  let end = text.length;
  while (start < end && text.charCodeAt(start) <= 0x20) start++;
  while (end > start && text.charCodeAt(end - 1) <= 0x20) end--;
  return text.slice(start, end);
}

/** True when the text is already as events may carry it. */
export const isUrlForEvents = (url: string) => url === invalidUrlForEvents || urlForEvents(url) === url;

/**
 * A URL field of an event's `data` (src/schemas/event-types.ts). The outbox redacts every field
 * declared with it; use it as it is (`.optional()` and `.nullable()` around it are fine), since the
 * outbox finds these fields by this schema's identity.
 */
export const eventUrlSchema = z
  .string()
  .refine(isUrlForEvents, 'a URL in an event carries no credentials, query or fragment')
  .meta({ description: 'A URL without userinfo, query or fragment: scheme://host[:port]/path' });

/** Where a URL field sits in an event's data: keys, `*` for every element of an array or record. */
export type UrlPath = readonly string[];

interface SchemaDef {
  type: string;
  innerType?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
  valueType?: z.ZodType;
  options?: z.ZodType[];
  in?: z.ZodType;
}

/** Every leaf of a data schema (what is not an object, array, record or union) with its path. */
export function schemaLeaves(schema: z.ZodType, at: UrlPath = []): { path: UrlPath; schema: z.ZodType }[] {
  const def = schema._zod.def as unknown as SchemaDef;
  switch (def.type) {
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'nonoptional':
    case 'readonly':
    case 'catch':
      return schemaLeaves(def.innerType!, at);
    case 'pipe':
      return schemaLeaves(def.in!, at);
    case 'object':
      return Object.entries(def.shape!).flatMap(([key, value]) => schemaLeaves(value, [...at, key]));
    case 'array':
      return schemaLeaves(def.element!, [...at, '*']);
    case 'record':
      return schemaLeaves(def.valueType!, [...at, '*']);
    case 'union':
      return def.options!.flatMap((option) => schemaLeaves(option, at));
    default:
      return [{ path: at, schema }];
  }
}

/** The paths of every `eventUrlSchema` field in a data schema. */
export const urlPathsOf = (schema: z.ZodType): UrlPath[] =>
  schemaLeaves(schema)
    .filter((leaf) => leaf.schema === eventUrlSchema)
    .map((leaf) => leaf.path);

/**
 * `data` with `urlForEvents` applied to every string at these paths (copies only what it changes;
 * what is not there, or not a string, is left as it is).
 */
export function redactUrlsAt<T>(data: T, paths: readonly UrlPath[]): T {
  let result = data;
  for (const path of paths) result = redactAt(result, path) as T;
  return result;
}

function redactAt(value: unknown, path: UrlPath): unknown {
  if (path.length === 0) return typeof value === 'string' ? urlForEvents(value) : value;
  if (typeof value !== 'object' || value === null) return value;
  const [head, ...rest] = path as [string, ...string[]];
  if (Array.isArray(value)) return head === '*' ? value.map((item) => redactAt(item, rest)) : value;
  const record = value as Record<string, unknown>;
  const keys = head === '*' ? Object.keys(record) : Object.hasOwn(record, head) ? [head] : [];
  if (keys.length === 0) return value;
  const copy = { ...record };
  for (const key of keys) copy[key] = redactAt(record[key], rest);
  return copy;
}
