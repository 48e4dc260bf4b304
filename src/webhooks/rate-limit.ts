import { randomUUID } from 'node:crypto';
import { DelayedError, type Job } from 'bullmq';
import type { RedisClient } from '../connections.js';
import type { JobData } from '../queues/job.js';

/**
 * Per-endpoint delivery rate, shared by every worker process through Redis (its clock, keys per
 * endpoint), in two steps:
 * - pacing: a generic cell rate algorithm with reservations. Each call books the next free slot,
 *   `1000 / perSecond` ms after the previous one, and says how long to wait for it. A delivery
 *   that must wait is delayed in the queue until its slot, so waiting costs no worker.
 * - the limit itself, as a delivery goes: a delayed job can come back late (a busy worker, a
 *   late promotion) and land next to the deliveries of later slots, so each send is also
 *   recorded in a one-second window that holds at most `perSecond` sends.
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

/**
 * Records a send when the last second holds fewer than ARGV[1]: answers {0, now}; otherwise
 * {the ms until one leaves it, now}. `now` is Redis's clock in ms.
 */
const sendScript = `
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 1000)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], 1000)
  return {0, now}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {math.max(1, tonumber(oldest[2]) + 1000 - now), now}
`;

export const rateKey = (prefix: string, endpointId: string) => `${prefix}:webhooks:rate:${endpointId}`;
const windowKey = (prefix: string, endpointId: string) => `${prefix}:webhooks:sent:${endpointId}`;

/** Books a slot for one delivery; resolves with the ms to wait for it (0: go now). */
async function reserveDeliverySlot(
  redis: RedisClient,
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

/**
 * Claims one send in the endpoint's one-second window: `waitMs` 0 when the delivery may go now
 * (then `at` is the instant the window counts it at, on Redis's clock), else the ms until the
 * window has room. `sendId` must be unique per send.
 */
export async function claimSend(
  redis: RedisClient,
  prefix: string,
  endpointId: string,
  perSecond: number,
  sendId: string,
): Promise<{ waitMs: number; at: Date }> {
  const [waitMs, at] = (await redis.eval(
    sendScript,
    1,
    windowKey(prefix, endpointId),
    String(perSecond),
    sendId,
  )) as [number, number];
  return { waitMs: Number(waitMs), at: new Date(Number(at)) };
}

type RateData = JobData & { rateSlotReserved?: boolean };

/**
 * Holds a delivery job until the endpoint's rate limit lets it go: first until its booked slot
 * (pacing), then, as it goes, until the endpoint's last second has room (the limit). Holding moves
 * the job back to the queue, marked as holding a slot, and ends this run (BullMQ's DelayedError).
 * Resolves with the instant the window counted the send at (the attempt's start, so the recorded
 * attempts show the limit as it was enforced), or undefined when the endpoint has no limit.
 */
export async function waitForRateSlot(
  redis: RedisClient,
  prefix: string,
  job: Job<JobData>,
  endpointId: string,
  perSecond: number | null,
): Promise<Date | undefined> {
  if (!perSecond) return undefined;
  const data = job.data as RateData;
  if (!data.rateSlotReserved) {
    const waitMs = await reserveDeliverySlot(redis, prefix, endpointId, perSecond);
    if (waitMs > 2) return delayUntil(job, Date.now() + waitMs);
  }
  const claim = await claimSend(redis, prefix, endpointId, perSecond, `${job.id}:${randomUUID()}`);
  if (claim.waitMs > 0) return delayUntil(job, Date.now() + claim.waitMs);
  if (data.rateSlotReserved) {
    // Going now: a later attempt books a slot of its own.
    const { rateSlotReserved: _, ...rest } = data;
    await job.updateData(rest);
  }
  return claim.at;
}

async function delayUntil(job: Job<JobData>, at: number): Promise<never> {
  await job.updateData({ ...job.data, rateSlotReserved: true } as RateData);
  await job.moveToDelayed(at, job.token);
  throw new DelayedError();
}
