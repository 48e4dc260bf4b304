import fc from 'fast-check';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { parseConfig, parseDuration } from '../../src/config.js';
import { ConfigError } from '../../src/errors/config-error.js';
import { RetryLaterError } from '../../src/errors/retry-later-error.js';
import { SignatureError } from '../../src/errors/signature-error.js';
import { parseRetryAfter } from '../../src/outbound/http.js';
import { attemptsFor, backoffStrategy, retryDelayMs } from '../../src/queues/backoff.js';
import { followUpJobId } from '../../src/queues/follow-ups.js';
import { closestTypes, matchesType, typeListQuerySchema } from '../../src/schemas/type-patterns.js';
import { routes } from '../../src/webhooks/relay.js';
import { generateSecret, signatureHeaders, verifySignature } from '../../src/webhooks/signing.js';

describe('durations and the retry schedule', () => {
  it('parses durations and the default schedule', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('5s')).toBe(5000);
    expect(parseDuration('1.5m')).toBe(90_000);
    expect(parseDuration('2h')).toBe(7_200_000);
    expect(parseDuration('5d')).toBe(432_000_000);
    expect(parseDuration('5 minutes')).toBeUndefined();
    const config = parseConfig({});
    expect(config.WEBHOOK_RETRY_SCHEDULE).toEqual([5e3, 3e5, 18e5, 72e5, 18e6, 36e6, 36e6]);
    expect(config.WEBHOOK_BREAKER_SPAN).toBe(5 * 86_400_000);
    expect(parseConfig({ WEBHOOK_RETRY_SCHEDULE: '5s,5m,30m,2h' }).WEBHOOK_RETRY_SCHEDULE).toEqual([
      5e3, 3e5, 18e5, 72e5,
    ]);
  });

  it('names the variable when the schedule is malformed', () => {
    expect(() => parseConfig({ WEBHOOK_RETRY_SCHEDULE: '5s,soon' })).toThrow(ConfigError);
    expect(() => parseConfig({ WEBHOOK_RETRY_SCHEDULE: '5s,soon' })).toThrow(/WEBHOOK_RETRY_SCHEDULE/);
  });

  it('spreads each delay by the jitter and repeats the last step', () => {
    const policy = { schedule: [1000, 60_000], jitter: 0.2 };
    expect(attemptsFor(policy)).toBe(3);
    expect(retryDelayMs(policy, 1, () => 0)).toBe(800);
    expect(retryDelayMs(policy, 1, () => 0.5)).toBe(1000);
    expect(retryDelayMs(policy, 1, () => 0.999999)).toBe(1200);
    expect(retryDelayMs(policy, 2, () => 0.5)).toBe(60_000);
    expect(retryDelayMs(policy, 9, () => 0.5)).toBe(60_000);
    for (let i = 0; i < 200; i++) {
      const delay = retryDelayMs(policy, 2);
      expect(delay).toBeGreaterThanOrEqual(48_000);
      expect(delay).toBeLessThanOrEqual(72_000);
    }
  });

  it('reads Retry-After as seconds or an HTTP date, bounded to a day', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('7', now)).toBe(7000);
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('999999', now)).toBe(24 * 3_600_000);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });

  it('is the backoff strategy of the webhooks worker, and Retry-After overrides it', async () => {
    const strategy = backoffStrategy(
      parseConfig({ WEBHOOK_RETRY_SCHEDULE: '1s,2s', WEBHOOK_RETRY_JITTER: '0' }),
    );
    expect(await strategy(1, 'webhook-schedule', new Error('500'))).toBe(1000);
    expect(await strategy(2, 'webhook-schedule', new Error('500'))).toBe(2000);
    expect(await strategy(1, 'webhook-schedule', new RetryLaterError('429', 9000))).toBe(9000);
    expect(() => strategy(1, 'exponential')).toThrow(/Unknown backoff type/);
  });
});

describe('event type patterns', () => {
  it('matches exact types, prefix wildcards and *', () => {
    expect(matchesType(['inventory.*'], 'inventory.adjusted')).toBe(true);
    expect(matchesType(['inventory.*'], 'inventory.level.changed')).toBe(true);
    expect(matchesType(['inventory.*'], 'inventoryx.adjusted')).toBe(false);
    expect(matchesType(['order.created'], 'order.created')).toBe(true);
    expect(matchesType(['order.created'], 'order.cancelled')).toBe(false);
    expect(matchesType(['*'], 'anything.at_all')).toBe(true);
    expect(typeListQuerySchema.parse('stock.*, product.created')).toEqual(['stock.*', 'product.created']);
    expect(typeListQuerySchema.safeParse('inventory.*.x').success).toBe(false);
    // Well-formed, but no declared type matches: refused with the nearest declared names.
    const unknown = typeListQuerySchema.safeParse('shipment.*');
    expect(unknown.success).toBe(false);
    expect(unknown.error?.issues[0]?.message).toMatch(/matches no known event type; did you mean/);
    expect(closestTypes('stock.moevd')[0]).toBe('stock.moved');
    expect(closestTypes('product.*')).toContain('product.*');
    expect(closestTypes('reservations.created')[0]).toBe('reservation.created');
    expect(typeListQuerySchema.safeParse("x'; drop").success).toBe(false);
  });

  it('routes an event to an endpoint once it exists, never the events about the endpoint itself', () => {
    const endpoint = {
      id: 'e1',
      event_types: ['webhook.*', 'product.*'],
      status: 'enabled' as const,
      created_seq: 10,
    };
    const event = (seq: number, type: string, aggregateId = 'x') => ({
      seq,
      id: `id-${seq}`,
      type,
      aggregate_type: type.startsWith('webhook.') ? 'webhook_endpoint' : 'product',
      aggregate_id: aggregateId,
    });
    expect(routes(endpoint, event(11, 'product.created'))).toBe(true);
    expect(routes(endpoint, event(10, 'product.created'))).toBe(false);
    expect(routes(endpoint, event(12, 'webhook.delivery_exhausted', 'e1'))).toBe(false);
    expect(routes(endpoint, event(12, 'webhook.delivery_exhausted', 'e2'))).toBe(true);
    expect(routes(endpoint, event(13, 'order.created'))).toBe(false);
  });

  it('derives delivery job ids from event, endpoint and cause', () => {
    const deliveryJobId = (eventId: string, endpointId: string, cause: 'new' | 'retry', key?: string) =>
      followUpJobId({ kind: 'delivery', payload: { eventId, endpointId, cause }, key });
    const a = deliveryJobId('ev', 'ep', 'new');
    expect(a).toMatch(/^webhooks-[0-9a-f]{40}$/);
    expect(deliveryJobId('ev', 'ep', 'new')).toBe(a);
    expect(deliveryJobId('ev', 'ep', 'retry', '1')).not.toBe(a);
    expect(deliveryJobId('ev', 'ep2', 'new')).not.toBe(a);
  });
});

describe('signing', () => {
  it('signs per Standard Webhooks; during a rotation both secrets verify on their own', () => {
    const [oldSecret, newSecret] = [generateSecret(), generateSecret()];
    const body = JSON.stringify({ id: 'evt', type: 'product.created', data: {} });
    const headers = signatureHeaders({ eventId: 'evt', body, secrets: [newSecret, oldSecret] });
    expect(headers['webhook-id']).toBe('evt');
    expect(headers['webhook-signature'].split(' ')).toHaveLength(2);
    expect(new Webhook(newSecret).verify(body, headers)).toMatchObject({ id: 'evt' });
    expect(new Webhook(oldSecret).verify(body, headers)).toMatchObject({ id: 'evt' });
    expect(() => new Webhook(generateSecret()).verify(body, headers)).toThrow();
    expect(() => new Webhook(newSecret).verify(`${body} `, headers)).toThrow();
  });

  it('verifies natively exactly what the standardwebhooks package signs, and nothing one byte off', () => {
    const secrets = [generateSecret(), generateSecret()];
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 40 }).filter((id) => !id.includes(' ')),
        fc.string({ maxLength: 300, unit: 'binary' }),
        fc.integer({ min: -299, max: 299 }),
        fc.integer({ min: 0, max: 1 }),
        (id, body, skew, which) => {
          const now = Date.now();
          const at = new Date(now + skew * 1000);
          const signature = new Webhook(secrets[which]!).sign(id, at, body);
          const headers = {
            'webhook-id': id,
            'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
            'webhook-signature': `v1,${Buffer.alloc(32).toString('base64')} ${signature}`,
          };
          expect(verifySignature(secrets, Buffer.from(body), headers, now)).toBe(id);
          expect(() => verifySignature(secrets, Buffer.from(`${body}.`), headers, now)).toThrow(
            SignatureError,
          );
          expect(() => verifySignature([generateSecret()], Buffer.from(body), headers, now)).toThrow(
            SignatureError,
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  it('refuses a timestamp over 5 minutes off and malformed signatures before any HMAC', () => {
    const secret = generateSecret();
    const now = Date.now();
    const headers = (at: number, signature?: string) => ({
      'webhook-id': 'msg',
      'webhook-timestamp': String(Math.floor(at / 1000)),
      'webhook-signature':
        signature ??
        signatureHeaders({ eventId: 'msg', body: 'b', secrets: [secret], at: new Date(at) })[
          'webhook-signature'
        ],
    });
    expect(verifySignature([secret], 'b', headers(now), now)).toBe('msg');
    expect(() => verifySignature([secret], 'b', headers(now - 301_000), now)).toThrow(/too old/);
    expect(() => verifySignature([secret], 'b', headers(now + 301_000), now)).toThrow(/too new/);
    for (const bad of ['v1,AAAA', 'v2,' + Buffer.alloc(32).toString('base64'), 'v1', '']) {
      expect(() => verifySignature([secret], 'b', headers(now, bad), now)).toThrow(SignatureError);
    }
  });
});
