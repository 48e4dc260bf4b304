import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';

/** A new endpoint secret in the Standard Webhooks format: `whsec_` + base64 of 32 random bytes. */
export function generateSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
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
  const at = input.at ?? new Date();
  const signatures = input.secrets.map((secret) => new Webhook(secret).sign(input.eventId, at, input.body));
  return {
    'webhook-id': input.eventId,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': signatures.join(' '),
  };
}

/** Why an inbound delivery was refused: missing headers, a bad signature, or a timestamp over 5 minutes off. */
export class SignatureError extends Error {
  override name = 'SignatureError';
}

/**
 * Verifies a Standard Webhooks delivery (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`) over the
 * exact bytes received, against any of `secrets` (several while one is being rotated). The
 * library refuses a timestamp more than 5 minutes from now. Returns the `webhook-id`.
 */
export function verifySignature(
  secrets: readonly string[],
  body: string,
  headers: Record<string, string | string[] | undefined>,
): string {
  const given: Record<string, string> = {};
  for (const name of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) {
    const value = headers[name];
    if (typeof value !== 'string' || value === '') throw new SignatureError(`The ${name} header is missing`);
    given[name] = value;
  }
  if (secrets.length === 0) throw new SignatureError('No INBOUND_WEBHOOK_SECRET is configured');
  let failure: unknown;
  for (const secret of secrets) {
    try {
      new Webhook(secret).verify(body, given, { jsonParse: false });
      return given['webhook-id']!;
    } catch (error) {
      failure = error;
    }
  }
  throw new SignatureError(failure instanceof Error ? failure.message : 'The signature does not verify');
}
