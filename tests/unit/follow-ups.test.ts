import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.js';
import { RetryLaterError } from '../../src/errors/retry-later-error.js';
import { backoffStrategy } from '../../src/queues/backoff.js';
import { findJob, schedulersOf } from '../../src/queues/catalog.js';
import { followUpJob, followUpJobId, followUpsAfter } from '../../src/queues/follow-ups.js';

const config = parseConfig({
  WEBHOOK_RETRY_SCHEDULE: '1s,2s,3s',
  SUPPLIER_SEND_ATTEMPTS: '4',
  REORDER_SEND_DELAY_MS: '60000',
});

describe('follow-up jobs', () => {
  it('keeps the ids of jobs queued by the previous release', () => {
    // Literals of the hand-built ids before the builder: a queued job must be found again.
    const delivery = { eventId: 'ev', endpointId: 'ep' };
    expect(followUpJobId({ kind: 'delivery', payload: { ...delivery, cause: 'new' } })).toBe(
      'webhooks-f99515cae38bdf875d424b6fd92ec3d2d22b9797',
    );
    expect(followUpJobId({ kind: 'delivery', payload: { ...delivery, cause: 'sweep' }, key: '3' })).toBe(
      'webhooks-0189571bc7b2ca59231a2cd46b1173ac8aeddd5b',
    );
    expect(followUpJobId({ kind: 'check', payload: { ruleId: 7 }, key: 'scan-42' })).toBe(
      'reorder-check-7-0c98d620d44def6639523a0b',
    );
    expect(followUpJobId({ kind: 'send', payload: { purchaseOrderId: 'po' } })).toBe('reorder-send-po');
    expect(followUpJobId({ kind: 'send', payload: { purchaseOrderId: 'po' }, key: 'v3' })).toBe(
      'reorder-send-po-v3',
    );
  });

  it('gives each kind its job, attempts from the settings, and the system actor unless told', () => {
    const delivery = followUpJob(config, {
      kind: 'delivery',
      payload: { eventId: 'ev', endpointId: 'ep', cause: 'retry' },
      key: '2',
      meta: { actor: 'ops', requestId: 'r1' },
    });
    expect(delivery).toMatchObject({
      name: 'webhook.deliver',
      data: {
        payload: { eventId: 'ev', endpointId: 'ep', cause: 'retry' },
        meta: { actor: 'ops', requestId: 'r1' },
      },
      opts: { attempts: 4, backoff: { type: 'webhook-schedule' } },
    });
    // A manual retry is due at once; the relay's deliveries wait behind every delivery that is due.
    expect(delivery.opts.priority).toBeUndefined();
    const fresh = followUpJob(config, {
      kind: 'delivery',
      payload: { eventId: 'ev', endpointId: 'ep', cause: 'new' },
    });
    expect(fresh.opts.priority).toBeGreaterThan(0);
    const send = followUpJob(config, { kind: 'send', payload: { purchaseOrderId: 'po' }, delayMs: 500 });
    expect(send).toMatchObject({
      name: 'purchase-order.send',
      data: { meta: { actor: 'system' } },
      opts: { attempts: 4, delay: 500, jobId: 'reorder-send-po', backoff: { type: 'supplier' } },
    });
    const check = followUpJob(config, { kind: 'check', payload: { ruleId: 7 }, key: 'rule-v1' });
    expect(check.name).toBe('reorder.check');
    expect(check.opts.attempts).toBeUndefined();
  });

  it('chooses what a completed job queues next', () => {
    const queuedAfter = (name: string, payload: unknown, result: unknown) =>
      followUpsAfter(config, name, payload, result).map((f) => followUpJob(config, f));
    expect(queuedAfter('reorder-rule.set', {}, { id: 7, version: 2 }).map((j) => j.opts.jobId)).toEqual([
      followUpJobId({ kind: 'check', payload: { ruleId: 7 }, key: 'rule-v2' }),
    ]);
    const [send] = queuedAfter('reorder.check', { ruleId: 7 }, { createdPurchaseOrderId: 'po' });
    expect(send?.opts).toMatchObject({ jobId: 'reorder-send-po', delay: 60_000 });
    expect(queuedAfter('reorder.check', { ruleId: 7 }, { outcome: 'unchanged' })).toEqual([]);
    const resend = { purchaseOrderId: 'po', resolution: { action: 'resend' } };
    expect(
      queuedAfter('purchase-order.resolve', resend, { id: 'po', status: 'sent', version: 5 }),
    ).toMatchObject([{ opts: { jobId: 'reorder-send-po-v5' } }]);
    const acknowledge = { purchaseOrderId: 'po', resolution: { action: 'acknowledge' } };
    expect(queuedAfter('purchase-order.resolve', acknowledge, { id: 'po', status: 'acknowledged' })).toEqual(
      [],
    );
    expect(queuedAfter('product.create', { sku: 'S' }, {})).toEqual([]);
  });
});

describe('schedulers', () => {
  it('each runs a job of its own queue, with a payload its schema takes, under a unique id', () => {
    const schedulers = schedulersOf(config);
    expect(new Set(schedulers.map((s) => s.id)).size).toBe(schedulers.length);
    expect(schedulers.map((s) => s.id)).toContain('reorder-scan');
    for (const s of schedulers) {
      const job = findJob(s.name);
      expect(job?.queue, s.id).toBe(s.queue);
      expect(job!.payload.safeParse((s.data as { payload: unknown }).payload).success, s.id).toBe(true);
      expect(s.every, s.id).toBeGreaterThan(0);
    }
    expect(schedulers.filter((s) => s.runAtStart).map((s) => s.id)).toEqual(['warm-cache']);
  });
});

describe('the backoff of every worker', () => {
  const strategy = backoffStrategy(
    parseConfig({ SUPPLIER_BACKOFF_MS: '1000', SUPPLIER_BACKOFF_MAX_MS: '3000', WEBHOOK_RETRY_JITTER: '0' }),
  );

  it('backs a supplier send off exponentially within its cap, and Retry-After wins there too', async () => {
    for (let i = 0; i < 50; i++) {
      const third = await strategy(3, 'supplier', new Error('503'));
      expect(third).toBeGreaterThanOrEqual(1500);
      expect(third).toBeLessThanOrEqual(3000);
    }
    expect(await strategy(3, 'supplier', new RetryLaterError('429', 7000))).toBe(7000);
    expect(await strategy(3, 'supplier', new RetryLaterError('503'))).toBeLessThanOrEqual(3000);
  });
});
