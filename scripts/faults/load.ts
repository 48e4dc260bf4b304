import { Webhook } from 'standardwebhooks';
import type { Client, Operation } from './client.js';

/** A small seeded generator (mulberry32): SEED fixes the load and the fault schedule. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const hotSku = 'HOT-1';
export const spreadSkus = Array.from({ length: 30 }, (_, i) => `SKU-${String(i + 1).padStart(3, '0')}`);
export const reorderSkus = spreadSkus.slice(0, 4);
export const locations = ['default', 'north'];

/** What the load has created and may act on next (only what the client saw completed). */
interface World {
  reservations: string[];
  orders: { number: string; state: 'placed' | 'confirmed' | 'fulfilled'; sku: string }[];
  products: string[];
}

/**
 * The mixed load, one operation per call of `next()`: product updates (read, then PUT with
 * If-Match) and creates, adjusts and transfers over spread skus, reservations on a hot sku with
 * little stock (and their commits and releases), orders through create / confirm / fulfil /
 * cancel / return, and signed inbound PMS webhooks. A third of the mutations ask `Prefer: wait`.
 */
export function createLoad(client: Client, options: { seed: number; inboundSecret: string }) {
  const random = seededRandom(options.seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const world: World = { reservations: [], orders: [], products: [...spreadSkus, hotSku] };
  const signer = new Webhook(options.inboundSecret);
  let n = 0;
  const key = (kind: string) => `${kind}-${options.seed}-${n++}`;
  const wait = () => random() < 0.33;
  const done = (op: Operation) => op.outcome === 'completed';

  const kinds: [number, () => Promise<unknown>][] = [
    [
      10,
      async () => {
        const sku = pick(spreadSkus);
        const current = await client.read(`/api/pms/products/${sku}`);
        const etag = current?.headers.get('etag');
        if (current?.status !== 200 || !etag) return;
        const product = current.body as { name: string };
        await client.submit({
          kind: 'product.update',
          method: 'PUT',
          path: `/api/pms/products/${sku}`,
          body: {
            name: product.name,
            price: { amount: 1000 + Math.floor(random() * 5000), currency: 'EUR' },
            expectedVersion: Number(etag.replaceAll('"', '')),
          },
          key: key('pu'),
          wait: wait(),
        });
      },
    ],
    [
      3,
      async () => {
        const sku = `NEW-${options.seed}-${n}`;
        const op = await client.submit({
          kind: 'product.create',
          method: 'POST',
          path: '/api/pms/products',
          body: { sku, name: sku, price: { amount: 1500, currency: 'EUR' } },
          key: key('pc'),
          wait: wait(),
        });
        if (done(op)) world.products.push(sku);
      },
    ],
    [
      20,
      () =>
        client.submit({
          kind: 'inventory.adjust',
          method: 'POST',
          path: '/api/pms/inventory/adjust',
          body: {
            movements: [
              {
                sku: pick(spreadSkus),
                location: pick(locations),
                delta: random() < 0.6 ? 1 + Math.floor(random() * 5) : -(1 + Math.floor(random() * 3)),
                reason: 'correction',
              },
            ],
          },
          key: key('ia'),
          wait: wait(),
        }),
    ],
    [
      8,
      () => {
        const [from, to] = random() < 0.5 ? locations : [...locations].reverse();
        return client.submit({
          kind: 'inventory.transfer',
          method: 'POST',
          path: '/api/pms/inventory/transfer',
          body: { sku: pick(spreadSkus), from, to, quantity: 1 + Math.floor(random() * 2) },
          key: key('it'),
          wait: wait(),
        });
      },
    ],
    [
      12,
      async () => {
        const op = await client.submit({
          kind: 'reservation.create',
          method: 'POST',
          path: '/api/pms/inventory/reservations',
          body: {
            reference: `hot-${n}`,
            ttlSeconds: 20,
            lines: [{ sku: hotSku, quantity: 1 + Math.floor(random() * 2) }],
          },
          key: key('rc'),
          wait: wait(),
        });
        const id = (op.result as { id?: string } | undefined)?.id;
        if (done(op) && id) world.reservations.push(id);
      },
    ],
    [
      6,
      async () => {
        const id = world.reservations.shift();
        if (!id) return;
        const action = random() < 0.5 ? 'commit' : 'release';
        await client.submit({
          kind: `reservation.${action}`,
          method: 'POST',
          path: `/api/pms/inventory/reservations/${id}/${action}`,
          key: key('rx'),
          wait: wait(),
        });
      },
    ],
    [
      3,
      () =>
        client.submit({
          kind: 'inventory.adjust',
          method: 'POST',
          path: '/api/pms/inventory/adjust',
          body: { movements: [{ sku: hotSku, location: 'default', delta: 3, reason: 'received' }] },
          key: key('ih'),
          wait: wait(),
        }),
    ],
    [
      12,
      async () => {
        const number = `SO-${options.seed}-${n}`;
        const sku = random() < 0.2 ? hotSku : pick(spreadSkus);
        const op = await client.submit({
          kind: 'order.create',
          method: 'POST',
          path: '/api/pms/orders',
          body: {
            orderNumber: number,
            currency: 'EUR',
            shipTo: { country: 'DE' },
            lines: [{ sku, quantity: 1 + Math.floor(random() * 2), unitPrice: 1999 }],
          },
          key: key('oc'),
          wait: wait(),
        });
        if (done(op)) world.orders.push({ number, state: 'placed', sku });
      },
    ],
    [
      16,
      async () => {
        const order = world.orders.shift();
        if (!order) return;
        const next =
          order.state === 'placed'
            ? random() < 0.8
              ? 'confirm'
              : 'cancel'
            : order.state === 'confirmed'
              ? 'fulfill'
              : 'returns';
        const op = await client.submit({
          kind: `order.${next === 'returns' ? 'return' : next}`,
          method: 'POST',
          path: `/api/pms/orders/${order.number}/${next}`,
          body: next === 'returns' ? { lines: [{ sku: order.sku, quantity: 1 }], restock: true } : undefined,
          key: key('ox'),
          wait: wait(),
        });
        if (!done(op)) return;
        if (next === 'confirm') world.orders.push({ ...order, state: 'confirmed' });
        if (next === 'fulfill') world.orders.push({ ...order, state: 'fulfilled' });
      },
    ],
    [
      10,
      () => {
        const webhookId = `msg_${options.seed}_${n}`;
        return client.submit({
          kind: 'inbound.inventory.adjusted',
          method: 'POST',
          path: '/api/pms/webhook/inventory',
          body: {
            type: 'inventory.adjusted',
            timestamp: new Date().toISOString(),
            data: {
              movements: [{ sku: pick(spreadSkus), location: pick(locations), delta: 2, reason: 'received' }],
            },
          },
          key: webhookId,
          wait: false,
          inbound: (body) => {
            const at = new Date();
            return {
              'webhook-id': webhookId,
              'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
              'webhook-signature': signer.sign(webhookId, at, body),
            };
          },
        });
      },
    ],
  ];
  const total = kinds.reduce((sum, [weight]) => sum + weight, 0);
  return {
    world,
    /** Starts one operation of the mix (not awaited by the caller: the load is open-loop). */
    next(): Promise<unknown> {
      let roll = random() * total;
      for (const [weight, run] of kinds) {
        roll -= weight;
        if (roll < 0) return run().catch(() => undefined);
      }
      return Promise.resolve();
    },
    random,
  };
}

/**
 * Runs the load at a fixed offered rate (open loop: a slow platform does not slow the offer) until
 * `stop()`; resolves once every started operation has ended.
 */
export function runAtRate(next: () => Promise<unknown>, perSecond: number) {
  const running = new Set<Promise<unknown>>();
  let stopped = false;
  const started = Date.now();
  let issued = 0;
  const timer = setInterval(() => {
    if (stopped) return;
    const due = Math.floor(((Date.now() - started) / 1000) * perSecond);
    while (issued < due) {
      issued += 1;
      const promise = next().finally(() => running.delete(promise));
      running.add(promise);
    }
  }, 20);
  return {
    get issued() {
      return issued;
    },
    get inFlight() {
      return running.size;
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      while (running.size > 0) await Promise.all([...running]);
    },
  };
}
