import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.js';
import {
  allowedActions,
  assertLanded,
  assertTransition,
  orderTransitions,
} from '../../src/domain/orders-status.js';
import { ConfigError } from '../../src/errors/config-error.js';
import { DomainError } from '../../src/errors/domain-error.js';
import { createOrderBody, orderActions, orderStatuses, returnBody } from '../../src/schemas/orders.js';
import { generateSecret } from '../../src/webhooks/signing.js';

describe('order transition table', () => {
  it('names every status, and only statuses and actions it knows', () => {
    expect(Object.keys(orderTransitions).sort()).toEqual([...orderStatuses].sort());
    for (const targets of Object.values(orderTransitions)) {
      for (const [action, to] of Object.entries(targets)) {
        expect(orderActions).toContain(action);
        for (const status of to as readonly string[]) expect(orderStatuses).toContain(status);
      }
    }
    // Terminal for everything but returns; expired for good.
    expect(allowedActions('fulfilled')).toEqual(['return']);
    expect(allowedActions('expired')).toEqual([]);
  });

  it('fails invalid_transition naming the current status and the allowed actions', () => {
    let error: unknown;
    try {
      assertTransition('SO-9', 'confirmed', 'confirm');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DomainError);
    expect(error).toMatchObject({
      code: 'invalid_transition',
      details: {
        orderNumber: 'SO-9',
        currentStatus: 'confirmed',
        action: 'confirm',
        allowedActions: ['fulfill', 'cancel'],
      },
    });
    expect(() => assertTransition('SO-9', 'reserved', 'confirm')).not.toThrow();
  });

  it('refuses a status the table does not lead to', () => {
    expect(() => assertLanded('SO-9', 'confirmed', 'fulfill', 'fulfilled')).not.toThrow();
    expect(() => assertLanded('SO-9', 'confirmed', 'fulfill', 'cancelled')).toThrow(/table forbids/);
  });
});

describe('order intake', () => {
  const order = (patch: Record<string, unknown>) => ({
    orderNumber: 'SO-1',
    currency: 'EUR',
    lines: [{ sku: 'A', quantity: 1, unitPrice: 100 }],
    ...patch,
  });

  it('takes ISO 4217 currencies and assigned ISO 3166-1 alpha-2 countries', () => {
    for (const currency of ['EUR', 'JPY', 'CHF', 'KWD']) {
      expect(createOrderBody.safeParse(order({ currency })).success, currency).toBe(true);
    }
    for (const currency of ['eur', 'EURO', 'XYZ', 'DEM']) {
      expect(createOrderBody.safeParse(order({ currency })).success, currency).toBe(false);
    }
    for (const country of ['DE', 'GB', 'US', 'SS', 'AX']) {
      expect(createOrderBody.safeParse(order({ shipTo: { country } })).success, country).toBe(true);
    }
    // UK and EU are reserved, not assigned; XK is user-assigned; de is not upper case.
    for (const country of ['UK', 'EU', 'XK', 'de', 'DEU']) {
      expect(createOrderBody.safeParse(order({ shipTo: { country } })).success, country).toBe(false);
    }
  });

  it('takes a location on a return only with restock', () => {
    const lines = [{ sku: 'A', quantity: 1 }];
    expect(returnBody.safeParse({ lines, restock: true, location: 'north' }).success).toBe(true);
    expect(returnBody.safeParse({ lines, restock: false, location: 'north' }).error?.issues).toMatchObject([
      { path: ['location'], message: 'only with restock: true' },
    ]);
  });
});

describe('INBOUND_WEBHOOK_SECRET', () => {
  it('takes one or more space-separated whsec_ secrets, and none by default', () => {
    const [a, b] = [generateSecret(), generateSecret()];
    expect(parseConfig({}).INBOUND_WEBHOOK_SECRET).toEqual([]);
    expect(parseConfig({ INBOUND_WEBHOOK_SECRET: ` ${a}  ${b} ` }).INBOUND_WEBHOOK_SECRET).toEqual([a, b]);
    expect(() => parseConfig({ INBOUND_WEBHOOK_SECRET: 'hunter2' })).toThrow(ConfigError);
  });
});
