import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { queueNames } from '../../src/queues/job.js';
import { keyGroups, keySlot, redisKeys } from '../../src/redis-keys.js';
import { createTestContext, json, type TestContext } from '../helpers/context.js';

/**
 * What only a Redis Cluster shows: the redis-cluster project of vitest.config.ts runs this file on
 * the scratch cluster of global-setup.ts (the other files of that project run as they are).
 */
describe.skipIf(!inject('redisClusterNodes'))('on a Redis Cluster', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext({ workers: ['products'] });
  });
  afterAll(() => ctx?.close());

  const cluster = () => ctx.api.redis as Cluster;

  it('connects every role through the cluster client', () => {
    expect(ctx.api.redis).toBeInstanceOf(Cluster);
    expect(cluster().nodes('master')).toHaveLength(3);
  });

  it('agrees with the servers on every slot the self-test computes offline', async () => {
    const keys = keyGroups(redisKeys(ctx.config)).flatMap((group) => group.keys);
    for (const key of keys) expect(await cluster().cluster('KEYSLOT', key)).toBe(keySlot(key));
  });

  it('puts each queue in one slot and spreads the queues over more than one master', async () => {
    const keys = redisKeys(ctx.config);
    const ownerOf = new Map<number, string>();
    for (const [from, to, master] of await cluster().cluster('SLOTS')) {
      for (let slot = from; slot <= to; slot++) ownerOf.set(slot, `${master![0]}:${master![1]}`);
    }
    const masters = new Set(
      queueNames.map((queue) => ownerOf.get(keySlot(`${keys.queuePrefix(queue)}:${queue}:wait`))),
    );
    expect(masters.size).toBeGreaterThan(1);
    // The queue's own keys, as BullMQ wrote them, sit in its tag's slot.
    const submitted = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: { prefer: 'wait=10' },
      payload: { sku: 'RC-1', name: 'Cluster mug', price: { amount: 100, currency: 'EUR' } },
    });
    expect(submitted.statusCode).toBe(201);
    const owner = cluster()
      .nodes('master')
      .find(
        (node) =>
          `${node.options.host}:${node.options.port}` ===
          ownerOf.get(keySlot(`${keys.queuePrefix('products')}:x`)),
      )!;
    const written = await owner.keys(`${keys.queuePrefix('products')}:products:*`);
    expect(written.length).toBeGreaterThan(0);
    expect(new Set(written.map(keySlot)).size).toBe(1);
  });

  it('submits a job and answers its status from the cluster', async () => {
    const accepted = await ctx.request({
      method: 'POST',
      url: '/api/pms/products',
      headers: { 'idempotency-key': 'rc-2' },
      payload: { sku: 'RC-2', name: 'Cluster mug', price: { amount: 100, currency: 'EUR' } },
    });
    expect(accepted.statusCode).toBe(202);
    const { id } = json(accepted);
    expect((await ctx.waitForJob(id)).state).toBe('completed');
    const status = await ctx.request({ method: 'GET', url: `/api/jobs/${id}` });
    expect(json(status)).toMatchObject({ id, state: 'completed' });
  });
});
