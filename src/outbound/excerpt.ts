/**
 * What we keep of a remote answer to show back (purchase order attempts and failures, their events,
 * job errors): a bounded excerpt with credentials taken out. A URL someone else chose may answer
 * with anything, including an echo of our request (its `X-Api-Key` and signature) or a page of an
 * API that hands out tokens; whoever reads the excerpt must learn neither.
 */

/** Characters of an answer kept as its excerpt. */
export const excerptChars = 300;

const redacted = '[redacted]';

/** Field and header names whose value is a credential (compared without `-` and `_`, any case). */
const secretNames =
  /(key|token|secret|passw(or)?d|pwd|signature|authorization|cookie|session|credential|bearer)/i;
const isSecretName = (name: string) => secretNames.test(name.replace(/[-_]/g, ''));

// "name": "value" or "name": 123 (a JSON member; an unterminated string runs to the end).
const jsonMember = /"((?:[^"\\]|\\.){1,200})"(\s*:\s*)("(?:[^"\\]|\\.)*(?:"|$)|[^,}\]\s]+)/g;
// name: value / name=value (headers, query strings, form bodies).
const plainPair = /(^|[\s{,;&?])([A-Za-z0-9_-]{1,100})(\s*[:=]\s*)([^\s,;&"'}]+)/g;
const authScheme = /\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{4,}/gi;
// Postgres text cannot hold NUL; other control characters only confuse whoever reads the excerpt.
// With the `u` flag a surrogate in the class matches only a lone one (a pair is one code point).
const unprintable = /(?![\t\n\r])[\p{Cc}\uD800-\uDFFF]/gu;

/** The forms a secret we sent may come back in: as sent, JSON-escaped, URL-encoded, base64. */
function formsOf(secret: string): string[] {
  return [
    secret,
    JSON.stringify(secret).slice(1, -1),
    encodeURIComponent(secret),
    Buffer.from(secret).toString('base64'),
  ];
}

/**
 * The first `maxChars` characters of `text`, with every form of `secrets` (what we sent: an api
 * key, a signature) and the value of every credential-named field, header or auth scheme replaced
 * by `[redacted]`; control characters and broken surrogates replaced by U+FFFD. Redaction runs on
 * a window longer than the excerpt, so a secret that straddles the cut is taken out whole.
 * `null` for no text.
 */
export function redactedExcerpt(
  text: string | undefined | null,
  secrets: readonly string[],
  maxChars = excerptChars,
): string | null {
  if (!text) return null;
  const forms = secrets
    .filter((s) => s.length >= 4)
    .flatMap(formsOf)
    .sort((a, b) => b.length - a.length);
  const longest = forms[0]?.length ?? 0;
  let window = text.slice(0, maxChars + longest + 4096);
  for (const form of forms) window = window.split(form).join(redacted);
  window = window
    .replace(authScheme, (_whole, scheme: string) => `${scheme} ${redacted}`)
    .replace(jsonMember, (whole, name: string, colon: string, value: string) =>
      isSecretName(name) ? `"${name}"${colon}${value.startsWith('"') ? `"${redacted}"` : redacted}` : whole,
    )
    .replace(plainPair, (whole, lead: string, name: string, sep: string) =>
      isSecretName(name) ? `${lead}${name}${sep}${redacted}` : whole,
    );
  return window.slice(0, maxChars).replace(unprintable, '\uFFFD');
}
