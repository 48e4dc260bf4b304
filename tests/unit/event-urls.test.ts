import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { eventTypes, urlPathsOfType } from '../../src/schemas/event-types.js';
import {
  eventUrlSchema,
  invalidUrlForEvents,
  isUrlForEvents,
  redactUrlsAt,
  schemaLeaves,
  type UrlPath,
  urlForEvents,
} from '../../src/schemas/event-urls.js';

/**
 * Events reach every pms key, the streams and `*` webhook subscribers: no event may carry a URL's
 * credentials (userinfo), query or fragment. One function redacts; the catalogue marks every URL
 * field; the outbox redacts the marked fields. These tests walk the whole catalogue.
 */

const hostile = 'https://user:pass@hooks.example.com:8443/in/x?token=SECRET#frag';
const leaks = (text: string) => /SECRET|pass@|token=|#frag/.test(text);

describe('urlForEvents', () => {
  it('keeps scheme, host, port and path; drops userinfo, query and fragment', () => {
    for (const [given, expected] of [
      [hostile, 'https://hooks.example.com:8443/in/x'],
      ['https://hooks.example.com', 'https://hooks.example.com/'],
      ['http://[::1]:8080/p?q=1', 'http://[::1]:8080/p'],
      ['HTTPS://User@Example.COM/A?b', 'https://example.com/A'],
      ['//user:pass@cdn.example/x?y=1', '//cdn.example/x'],
      ['\\\\user:pass@cdn.example\\x', '//cdn.example/x'],
      ['/\t/user:pass@cdn.example/x', '//cdn.example/x'],
      [' \u0001//user:pass@cdn.example/x ', '//cdn.example/x'],
      ['/media/a/b.webp?v=2#f', '/media/a/b.webp'],
      ['upload', 'upload'],
      ['ssh://git:pw@host.example/repo?x', 'ssh://host.example/repo'],
      ['mailto:someone@example.com?subject=x', 'mailto:'],
      ['http://[broken', invalidUrlForEvents],
    ] as const) {
      expect(urlForEvents(given), given).toBe(expected);
      expect(isUrlForEvents(expected), expected).toBe(true);
    }
    expect(eventUrlSchema.safeParse(hostile).success).toBe(false);
    expect(eventUrlSchema.safeParse('https://hooks.example.com/in?').success).toBe(false);
    expect(eventUrlSchema.safeParse(urlForEvents(hostile)).success).toBe(true);
  });

  it('returns, for any text, a value it leaves unchanged and that carries no userinfo, query or fragment', () => {
    const urls = fc.webUrl({
      validSchemes: ['http', 'https', 'ftp', 'ws'],
      withQueryParameters: true,
      withFragments: true,
      authoritySettings: { withUserInfo: true, withPort: true, withIPv6: true },
    });
    // Texts made of the pieces a parser treats specially: slashes, backslashes, tabs, userinfo, ….
    const pieces = fc
      .array(
        fc.constantFrom(
          '/',
          '\\',
          '\t',
          '\n',
          ' ',
          '\u0001',
          'user:pw@',
          'h.example',
          ':8080',
          '?q=1',
          '#f',
          'http:',
          'x:',
          '.',
        ),
        { maxLength: 8 },
      )
      .map((parts) => parts.join(''));
    fc.assert(
      fc.property(fc.oneof(urls, pieces, fc.string(), fc.string({ unit: 'binary' })), (text) => {
        const redacted = urlForEvents(text);
        expect(urlForEvents(redacted)).toBe(redacted);
        expect(isUrlForEvents(redacted)).toBe(true);
        if (redacted === invalidUrlForEvents) return;
        const parsed = new URL(redacted, 'http://relative.invalid');
        expect([parsed.username, parsed.password, parsed.search, parsed.hash]).toEqual(['', '', '', '']);
      }),
      { numRuns: 5000 },
    );
  });
});

/** Every leaf of a data schema with its path and kind (`event-url` for a declared URL field). */
const leavesOf = (schema: z.ZodType) =>
  schemaLeaves(schema).map((leaf) => ({
    path: leaf.path,
    kind: leaf.schema === eventUrlSchema ? 'event-url' : leaf.schema._zod.def.type,
  }));

/** A field name that says it holds a URL. */
const urlName = /url|uri|href|link|source|callback|redirect/i;
const nameOf = (path: UrlPath) => [...path].reverse().find((segment) => segment !== '*') ?? '';

/**
 * Values the catalogue leaves open (any JSON): each must be here, with why no URL a pms key must
 * not see can reach it.
 */
const openValues: Record<string, string> = {
  'product.attributes.*': "the PMS's own product attributes, given back as it sent them",
};

/** Sample data with `value` at each of these paths. */
function dataWith(paths: readonly UrlPath[], value: string): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const path of paths) {
    let node: Record<string, unknown> = root;
    path.forEach((segment, i) => {
      const key = segment === '*' ? 'k' : segment;
      if (i === path.length - 1) node[key] = value;
      else {
        node[key] ??= {};
        node = node[key] as Record<string, unknown>;
      }
    });
  }
  return root;
}

const strings = (value: unknown): string[] =>
  typeof value === 'string'
    ? [value]
    : typeof value === 'object' && value !== null
      ? Object.values(value).flatMap(strings)
      : [];

describe('the event catalogue', () => {
  it('declares every URL-named field of every event type as an event URL', () => {
    const unmarked = eventTypes.flatMap((type) =>
      leavesOf(type.data)
        .filter((leaf) => urlName.test(nameOf(leaf.path)) && leaf.kind !== 'event-url')
        .map((leaf) => `${type.name}: ${leaf.path.join('.')} (${leaf.kind})`),
    );
    expect(unmarked).toEqual([]);
    // The marked fields are the ones the outbox finds.
    for (const type of eventTypes) {
      const marked = leavesOf(type.data).filter((leaf) => leaf.kind === 'event-url');
      expect(urlPathsOfType(type.name).map((p) => p.join('.'))).toEqual(marked.map((l) => l.path.join('.')));
    }
  });

  it('leaves no value open to any JSON except the ones listed with a reason', () => {
    const open = eventTypes.flatMap((type) =>
      leavesOf(type.data)
        .filter((leaf) => leaf.kind === 'unknown' || leaf.kind === 'any')
        .map((leaf) => leaf.path.join('.'))
        .filter((path) => !(path in openValues))
        .map((path) => `${type.name}: ${path}`),
    );
    expect(open).toEqual([]);
  });

  it('has no URL field in a type a trigger writes (the outbox cannot redact those)', () => {
    const triggerUrls = eventTypes
      .filter((type) => 'writtenBy' in type && type.writtenBy === 'trigger')
      .filter((type) => urlPathsOfType(type.name).length > 0)
      .map((type) => type.name);
    expect(triggerUrls).toEqual([]);
  });

  it('redacts every URL field of every type, and its schema refuses the URL unredacted', () => {
    const withUrls = eventTypes.filter((type) => urlPathsOfType(type.name).length > 0);
    expect(withUrls.map((t) => t.name)).toEqual(
      expect.arrayContaining([
        'webhook.endpoint_created',
        'alert.opened',
        'alert.resolved',
        'supplier.created',
        'image.processed',
        'image.failed',
      ]),
    );
    for (const type of withUrls) {
      const paths = urlPathsOfType(type.name);
      const written = dataWith(paths, hostile);
      const stored = redactUrlsAt(written, paths);
      expect(leaks(JSON.stringify(stored)), type.name).toBe(false);
      expect(strings(stored).every(isUrlForEvents), type.name).toBe(true);
      // What the writer gave is left as it was (the outbox stores a copy).
      expect(JSON.stringify(written)).toContain('SECRET');
    }
  });
});
