import { describe, expect, it } from 'vitest';
import { allows } from '../../src/api/auth.js';
import { statusForCode } from '../../src/api/problems.js';
import { preferredWaitSeconds } from '../../src/api/submit-job.js';
import { queueOfJobId } from '../../src/queues/queues.js';
import { createProductPayload } from '../../src/schemas/products.js';

describe('Prefer: wait', () => {
  it('reads wait=N among other preferences and clamps it to 1-30 s', () => {
    expect(preferredWaitSeconds(undefined)).toBeUndefined();
    expect(preferredWaitSeconds('return=minimal')).toBeUndefined();
    expect(preferredWaitSeconds('wait=5')).toBe(5);
    expect(preferredWaitSeconds('return=representation, wait=12')).toBe(12);
    expect(preferredWaitSeconds('wait=0')).toBe(1);
    expect(preferredWaitSeconds('wait=600')).toBe(30);
  });
});

describe('scopes', () => {
  it('lets admin keys use every route, pms keys pms routes, any key the key-scoped routes', () => {
    expect(allows(['pms'], 'pms')).toBe(true);
    expect(allows(['pms'], 'admin')).toBe(false);
    expect(allows(['admin'], 'pms')).toBe(true);
    expect(allows(['admin'], 'admin')).toBe(true);
    expect(allows(['pms'], 'key')).toBe(true);
  });
});

describe('job ids and error codes', () => {
  it('finds the queue in a job id and rejects ids of no queue', () => {
    expect(queueOfJobId('products-abc')).toBe('products');
    expect(queueOfJobId('nonsense-abc')).toBeUndefined();
    expect(queueOfJobId('abc')).toBeUndefined();
  });

  it('maps domain codes to HTTP statuses, unknown codes to 500', () => {
    expect(statusForCode('not_found')).toBe(404);
    expect(statusForCode('version_conflict')).toBe(409);
    expect(statusForCode('publish_rules_failed')).toBe(422);
    expect(statusForCode('job_failed')).toBe(500);
  });
});

describe('product payload', () => {
  it('accepts a minimal product and defaults its status to draft', () => {
    const parsed = createProductPayload.parse({
      sku: 'A-1',
      name: 'A',
      price: { amount: 100, currency: 'EUR' },
    });
    expect(parsed.status).toBe('draft');
  });

  it('reports every invalid field at once', () => {
    const result = createProductPayload.safeParse({
      sku: 'has space',
      name: '',
      price: { amount: -1.5, currency: 'EURO' },
      status: 'archived',
    });
    expect(result.success).toBe(false);
    const paths = result.error!.issues.map((i) => i.path.join('.'));
    expect(paths).toEqual(
      expect.arrayContaining(['sku', 'name', 'price.amount', 'price.currency', 'status']),
    );
  });

  it('rejects sku longer than 64 characters', () => {
    const result = createProductPayload.safeParse({
      sku: 'x'.repeat(65),
      name: 'A',
      price: { amount: 1, currency: 'EUR' },
    });
    expect(result.success).toBe(false);
  });
});
