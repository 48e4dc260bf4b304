import { expect } from 'vitest';

// biome-ignore lint/suspicious/noExplicitAny: report answers are checked by the assertions that read them
export type Answer = any;

/** A GET of a path of a listening app, over a real socket. */
export type Get = (path: string, headers?: Record<string, string>) => Promise<Response>;

/** GETs of the app listening at `base`, with `key` as the Bearer token. */
export const getWithKey =
  (base: string, key: string): Get =>
  (path, headers = {}) =>
    fetch(`${base}${path}`, { headers: { authorization: `Bearer ${key}`, ...headers } });

/**
 * Every page of a report's JSON answer to `path` (its query without limit or cursor): pages of
 * `limit`, each asked with the `nextCursor` of the one before, up to the page whose `nextCursor` is null.
 */
export async function everyPage(get: Get, path: string, limit: number): Promise<Answer[]> {
  const pages: Answer[] = [];
  let cursor: string | null = null;
  do {
    const response = await get(
      `${path}${path.includes('?') ? '&' : '?'}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
    );
    const body: Answer = await response.json();
    expect(response.status, `${path}: ${JSON.stringify(body)}`).toBe(200);
    expect(body.items.length, path).toBeLessThanOrEqual(limit);
    // A cursor that does not move on would page forever.
    if (cursor) expect(body.nextCursor, path).not.toBe(cursor);
    pages.push(body);
    cursor = body.nextCursor;
  } while (cursor);
  return pages;
}
