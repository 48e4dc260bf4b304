import { describe, expect, it } from 'vitest';
import { acceptanceProblems, parseAnswer } from '../../src/domain/reorder-supplier-protocol.js';
import { excerptChars, redactedExcerpt } from '../../src/outbound/excerpt.js';

describe('acceptanceProblems', () => {
  const ordered = [
    { sku: 'A', quantity: 10 },
    { sku: 'B', quantity: 5 },
  ];

  it('takes quantities at most as ordered, lines left out included', () => {
    expect(acceptanceProblems(ordered, [])).toEqual([]);
    expect(acceptanceProblems(ordered, [{ sku: 'A', quantity: 10 }])).toEqual([]);
    expect(acceptanceProblems(ordered, [{ sku: 'B', quantity: 0 }])).toEqual([]);
  });

  it('names every line beyond the order, outside it, or twice', () => {
    expect(
      acceptanceProblems(ordered, [
        { sku: 'A', quantity: 1_000_000_000 },
        { sku: 'C', quantity: 1 },
        { sku: 'B', quantity: 5 },
        { sku: 'B', quantity: 1 },
      ]),
    ).toEqual([
      'accepts 1000000000 of A, more than the 10 ordered',
      'accepts C, which is not on the order',
      'names B twice',
    ]);
  });
});

describe('parseAnswer', () => {
  it('reads an answer however long, and refuses NUL in its strings', () => {
    const long = JSON.stringify({ status: 'accepted', reference: 'R-1', note: 'x'.repeat(5000) });
    expect(parseAnswer(long)).toEqual({ answer: { status: 'accepted', reference: 'R-1' } });
    expect(parseAnswer(long.slice(0, 1024))).toEqual({ error: 'the answer is not JSON' });
    expect(parseAnswer(JSON.stringify({ status: 'accepted', reference: 'R\u0000' }))).toMatchObject({
      error: expect.stringContaining('reference must not contain NUL'),
    });
  });
});

describe('redactedExcerpt', () => {
  const key = 'sk_live_9f8e7d6c5b4a';

  it('takes out what we sent, in every form it may come back in', () => {
    for (const form of [key, encodeURIComponent(`${key}/+`), Buffer.from(key).toString('base64')]) {
      const text = `{"echo":"${form}"}`;
      expect(redactedExcerpt(text, [key, `${key}/+`])).not.toContain(form);
    }
    // An echo service's answer: the headers we sent, first.
    const echo = JSON.stringify({
      headers: { 'X-Api-Key': key, 'X-Stockflow-Signature': 'v1=abc123def456' },
      data: 'x'.repeat(5000),
    });
    const excerpt = redactedExcerpt(echo, [key, 'v1=abc123def456'])!;
    expect(excerpt).not.toContain(key);
    expect(excerpt).not.toContain('abc123def456');
    expect(excerpt.length).toBe(excerptChars);
  });

  it('takes out credential-named fields, headers and auth schemes it was not told about', () => {
    const text = [
      '{"access_token":"eyJhbGciOi.payload.sig","expires":3600,"user":"ann","password":"hunter2"}',
      'Set-Cookie: session=abc123',
      'Authorization: Bearer tok_0123456789',
      '/cb?api_key=k-123&page=2',
    ].join('\n');
    const excerpt = redactedExcerpt(text, [])!;
    for (const secret of ['eyJhbGciOi', 'hunter2', 'abc123', 'tok_0123456789', 'k-123']) {
      expect(excerpt).not.toContain(secret);
    }
    expect(excerpt).toContain('"expires":3600');
    expect(excerpt).toContain('"user":"ann"');
    expect(excerpt).toContain('page=2');
  });

  it('removes a secret that straddles the cut whole, and characters Postgres cannot store', () => {
    const text = `${'a'.repeat(excerptChars - 5)}${key}`;
    expect(redactedExcerpt(text, [key])).toBe(`${'a'.repeat(excerptChars - 5)}[reda`);
    expect(redactedExcerpt('a\u0000b\tc\ud800', [])).toBe('a\uFFFDb\tc\uFFFD');
    expect(redactedExcerpt('', [key])).toBeNull();
    expect(redactedExcerpt(undefined, [key])).toBeNull();
  });
});
