import type { Redis } from 'ioredis';

/**
 * Per-endpoint delivery rate, shared by every worker process through Redis (its clock, one key
 * per endpoint). A generic cell rate algorithm with reservations: each call books the next free
 * slot, `1000 / perSecond` ms after the previous one, and says how long to wait for it. A
 * delivery that must wait is delayed in the queue until its slot, so waiting costs no worker.
 */
const reserveScript = `
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
local interval = tonumber(ARGV[1])
redis.call('SET', KEYS[1], tostring(slot + interval), 'PX', slot + interval - now + 1000)
return slot - now
`;

export const rateKey = (prefix: string, endpointId: string) => `${prefix}:webhooks:rate:${endpointId}`;

/** Books a slot for one delivery; resolves with the ms to wait for it (0: go now). */
export async function reserveDeliverySlot(
  redis: Redis,
  prefix: string,
  endpointId: string,
  perSecond: number,
): Promise<number> {
  const interval = Math.max(1, Math.floor(1000 / perSecond));
  const waitMs = (await redis.eval(
    reserveScript,
    1,
    rateKey(prefix, endpointId),
    String(interval),
  )) as number;
  return Math.max(0, Number(waitMs));
}
