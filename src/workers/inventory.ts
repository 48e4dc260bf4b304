import type { Knex } from 'knex';
import type { LevelKey } from '../domain/levels.js';
import { lockCandidateLevels } from '../domain/levels.js';
import { createLocation, updateLocation } from '../domain/locations.js';
import { expireDue } from '../domain/orders.js';
import {
  commitReservation,
  createReservation,
  extendReservation,
  releaseReservation,
} from '../domain/reservations.js';
import { adjustStock, countStock, setSafetyStock, transferStock } from '../domain/stock.js';
import { applyOnce } from './apply-once.js';
import { GroupCommit } from './group-commit.js';
import type { JobContext, QueueHandlers, WorkerDeps } from './processor.js';

/**
 * What a batched inventory job locks: levels by key, and (reservations without a location) every
 * active level of a sku. Jobs that lock a reservation first (commit, release, extend, expiry) and
 * location jobs run alone: their lock order is not the batch's.
 */
interface InventoryLocks {
  keys: LevelKey[];
  skus: string[];
}

/** Locks every level the batch touches in one `SELECT … FOR UPDATE`, in (sku, location) order. */
async function lockInventory(trx: Knex.Transaction, inputs: InventoryLocks[]): Promise<void> {
  const keys = new Map<string, LevelKey>();
  for (const input of inputs) for (const k of input.keys) keys.set(`${k.sku}\u0000${k.location}`, k);
  const skus = [...new Set(inputs.flatMap((i) => i.skus))];
  await lockCandidateLevels(trx, skus, [...keys.values()]);
}

/** One executor per worker process (per set of worker deps), made on first use. */
const executors = new WeakMap<WorkerDeps, GroupCommit<InventoryLocks>>();

function executorOf(deps: WorkerDeps): GroupCommit<InventoryLocks> {
  let executor = executors.get(deps);
  if (!executor) {
    executor = new GroupCommit<InventoryLocks>(deps.db, {
      queue: 'inventory',
      maxJobs: deps.config.INVENTORY_BATCH_MAX_JOBS,
      maxLines: deps.config.INVENTORY_BATCH_MAX_LINES,
      lock: lockInventory,
      metrics: deps.metrics,
    });
    executors.set(deps, executor);
  }
  return executor;
}

/** Applies the job once: in a group-commit batch when INVENTORY_GROUP_COMMIT is on, else alone. */
function grouped<R>(
  { deps, job, meta }: JobContext,
  locks: InventoryLocks,
  apply: (trx: Knex.Transaction) => Promise<R>,
): Promise<R> {
  if (!deps.config.INVENTORY_GROUP_COMMIT) return applyOnce(deps.db, job, meta, apply);
  const lines = Math.max(1, locks.keys.length + locks.skus.length);
  return executorOf(deps).run({ job, meta, input: locks, lines, apply });
}

export const inventoryHandlers = {
  'location.create': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => createLocation(trx, payload)),
  'location.update': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => updateLocation(trx, payload)),
  'inventory.adjust': (ctx, payload) =>
    grouped(ctx, { keys: payload.movements, skus: [] }, (trx) => adjustStock(trx, payload)),
  'inventory.set': (ctx, payload) =>
    grouped(ctx, { keys: [payload], skus: [] }, (trx) => countStock(trx, payload)),
  'inventory.transfer': (ctx, payload) =>
    grouped(
      ctx,
      {
        keys: [
          { sku: payload.sku, location: payload.from },
          { sku: payload.sku, location: payload.to },
        ],
        skus: [],
      },
      (trx) => transferStock(trx, payload),
    ),
  'inventory.set-safety-stock': (ctx, payload) =>
    grouped(ctx, { keys: [payload], skus: [] }, (trx) => setSafetyStock(trx, payload)),
  'reservation.create': (ctx, payload) =>
    grouped(
      ctx,
      {
        keys: payload.lines.flatMap((l) => (l.location ? [{ sku: l.sku, location: l.location }] : [])),
        skus: payload.lines.flatMap((l) => (l.location ? [] : [l.sku])),
      },
      (trx) => createReservation(trx, payload),
    ),
  'reservation.commit': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => commitReservation(trx, payload)),
  'reservation.release': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => releaseReservation(trx, payload)),
  'reservation.extend': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => extendReservation(trx, payload)),
  // Orders' reservations expire with their orders, in this transaction.
  'reservation.expire-due': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => expireDue(trx, payload)),
} satisfies QueueHandlers<'inventory'>;
