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
