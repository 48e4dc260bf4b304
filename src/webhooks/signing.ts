import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { SignatureError } from '../errors/signature-error.js';

/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com/), both ways: `v1,<base64 of
 * HMAC-SHA256 over "<webhook-id>.<webhook-timestamp>.<body>">` keyed with the base64 bytes after
 * the `whsec_` prefix. Native HMAC (node:crypto, OpenSSL) and a constant-time comparison; the
 * `standardwebhooks` package and `openssl dgst` check both directions in the tests.
 */

/** A delivery's timestamp may be this far from now (the standard's 5 minutes). */
const toleranceSeconds = 5 * 60;
/** Signatures looked at in one `webhook-signature` header (a rotating sender sends two). */
const maxSignatures = 10;
const maxWebhookIdLength = 255;

/** A new endpoint secret in the Standard Webhooks format: `whsec_` + base64 of 32 random bytes. */
export function generateSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

const keyOf = (secret: string) => Buffer.from(secret.replace(/^whsec_/, ''), 'base64');

function hmac(secret: string, id: string, timestamp: string, body: string | Buffer): Buffer {
  return createHmac('sha256', keyOf(secret)).update(`${id}.${timestamp}.`).update(body).digest();
}

/**
 * The Standard Webhooks headers for one attempt. `webhook-id` is the event id (stable across
 * retries, so receivers deduplicate by it); the timestamp is the attempt's. During a secret
 * rotation both secrets sign: `webhook-signature` carries both, space-separated, and a receiver
 * holding either verifies.
 */
export function signatureHeaders(input: {
  eventId: string;
  body: string;
  secrets: readonly string[];
  at?: Date;
}): Record<'webhook-id' | 'webhook-timestamp' | 'webhook-signature', string> {
  const timestamp = String(Math.floor((input.at ?? new Date()).getTime() / 1000));
  const signatures = input.secrets.map(
    (secret) => `v1,${hmac(secret, input.eventId, timestamp, input.body).toString('base64')}`,
  );
  return {
    'webhook-id': input.eventId,
    'webhook-timestamp': timestamp,
    'webhook-signature': signatures.join(' '),
  };
}

/**
 * Verifies a Standard Webhooks delivery over the exact bytes received, against any of `secrets`
 * (several while one is being rotated), and returns its `webhook-id`. The cheap refusals come
 * first (missing or malformed headers, a timestamp more than 5 minutes from now, no `v1`
 * signature of 32 bytes): only a delivery that could verify costs one HMAC per secret.
 */
export function verifySignature(
  secrets: readonly string[],
  body: Buffer | string,
  headers: Record<string, string | string[] | undefined>,
  now = Date.now(),
): string {
  const given: Record<string, string> = {};
  for (const name of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) {
    const value = headers[name];
    if (typeof value !== 'string' || value === '') throw new SignatureError(`The ${name} header is missing`);
    given[name] = value;
  }
  const id = given['webhook-id']!;
  const timestamp = given['webhook-timestamp']!;
  if (secrets.length === 0) throw new SignatureError('No INBOUND_WEBHOOK_SECRET is configured');
  if (id.length > maxWebhookIdLength) throw new SignatureError('webhook-id is over 255 characters');
  if (!/^\d{1,12}$/.test(timestamp)) throw new SignatureError('webhook-timestamp is not Unix seconds');
  const skew = Math.floor(now / 1000) - Number(timestamp);
  if (skew > toleranceSeconds) throw new SignatureError('Message timestamp too old');
  if (skew < -toleranceSeconds) throw new SignatureError('Message timestamp too new');
  const candidates = given['webhook-signature']!.split(' ')
    .slice(0, maxSignatures)
    .flatMap((entry) => {
      const [version, value] = entry.split(',', 2);
      const bytes = version === 'v1' && value ? Buffer.from(value, 'base64') : undefined;
      return bytes?.length === 32 ? [bytes] : [];
    });
  if (candidates.length === 0) throw new SignatureError('No v1 signature of 32 bytes in webhook-signature');
  for (const secret of secrets) {
    const expected = hmac(secret, id, timestamp, body);
    if (candidates.some((candidate) => timingSafeEqual(candidate, expected))) return id;
  }
  throw new SignatureError('No matching signature found');
}
