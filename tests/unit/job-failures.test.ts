import { describe, expect, it } from 'vitest';
import { failedReasonOf, failureFromReason } from '../../src/errors/domain-error.js';

describe('a domain failure in a job’s failedReason', () => {
  it.each([
    { code: 'sku_taken', message: 'SKU LAMP-1 exists', details: { sku: 'LAMP-1' } },
    { code: 'insufficient_stock', message: 'no stock', details: {} },
    // A message with braces of its own, and details with nested objects.
    {
      code: 'invalid_payload',
      message: 'bad {x} and {"y":1}',
      details: { issues: [{ path: 'a' }], n: { m: 1 } },
    },
    { code: 'not_found', message: '', details: { id: 'x {' } },
  ])('reads back what it wrote: $code', (failure) => {
    expect(failureFromReason(failedReasonOf(failure))).toEqual(failure);
  });

  it('finds no domain failure in any other reason', () => {
    for (const reason of [
      undefined,
      '',
      'job stalled more than allowable limit',
      'Missing lock for job products-1. moveToFinished',
      'connect ECONNREFUSED 127.0.0.1:5432',
      'sku_taken: a reason of the last release without details',
      'timeout: {not json}',
    ])
      expect(failureFromReason(reason)).toBeUndefined();
  });
});
