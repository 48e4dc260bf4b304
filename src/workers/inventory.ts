import type { Knex } from 'knex';
import { insertJobMovements, type NewMovement } from '../domain/ledger.js';
import { type LevelKey, levelKey, lockCandidateLevels } from '../domain/levels.js';
import { createLocation, updateLocation } from '../domain/locations.js';
import { expireDue } from '../domain/orders.js';
import {
  commitReservation,
  createReservation,
  extendReservation,
  releaseReservation,
} from '../domain/reservations.js';
import {
  type AdjustLine,
  adjustStock,
  countStock,
  type LevelFigures,
  planAdjust,
  setSafetyStock,
  transferStock,
} from '../domain/stock.js';
import { applyOnce } from './apply-once.js';
import { type BatchState, GroupCommit } from './group-commit.js';
import type { JobContext, QueueHandlers, WorkerDeps } from './processor.js';

/**
 * What a batched inventory job locks: levels by key, and (reservations without a location) every
 * active level of a sku. Jobs that lock a reservation first (commit, release, extend, expiry) and
 * location jobs run alone: their lock order is not the batch's. An adjust carries its lines: the
 * batch decides it in memory (planAdjust) and writes its movements with the others'.
 */
interface InventoryLocks {
  keys: LevelKey[];
  skus: string[];
  adjust?: AdjustLine[];
}

/** Locks every level the batch touches in one `SELECT … FOR UPDATE`, in (sku, location) order. */
async function lockInventory(
  trx: Knex.Transaction,
  inputs: InventoryLocks[],
): Promise<BatchState<InventoryLocks>> {
  const keys = new Map<string, LevelKey>();
  for (const input of inputs) for (const k of input.keys) keys.set(levelKey(k), k);
  const skus = [...new Set(inputs.flatMap((i) => i.skus))];
  const levels = new Map<string, LevelFigures>();
  for (const row of await lockCandidateLevels(trx, skus, [...keys.values()])) levels.set(levelKey(row), row);
  let planned: { movements: (NewMovement & { jobId: string; actor: string })[] }[] = [];
  return {
    plan(input, job) {
      // A level not locked (not created yet, or an unknown sku or location): adjustStock decides.
      if (!input.adjust?.every((l) => levels.has(levelKey(l)))) return false;
      const { movements, after } = planAdjust(levels, input.adjust);
      for (const [key, figures] of after) levels.set(key, figures);
      planned.push({ movements: movements.map((m) => ({ ...m, jobId: job.id, actor: job.actor })) });
      return true;
    },
    async flush(db) {
      const written = await insertJobMovements(
        db,
        planned.flatMap((p) => p.movements),
      );
      let at = 0;
      const results = planned.map((p) => {
        const movements = written.slice(at, at + p.movements.length);
        at += p.movements.length;
        return { movements };
      });
      planned = [];
      return results;
    },
    async refresh(db, input) {
      const touched = [...new Set([...input.keys.map((k) => k.sku), ...input.skus])];
      const { rows } = await db.raw<{ rows: (LevelFigures & LevelKey)[] }>(
        'select sku, location, on_hand, reserved, safety_stock from inventory_levels where sku = any(?::text[])',
        [touched],
      );
      // Only rows this transaction holds: those locked at the start, and those the job locked.
      const own = new Set(input.keys.map(levelKey));
      for (const row of rows) {
        if (levels.has(levelKey(row)) || own.has(levelKey(row))) levels.set(levelKey(row), row);
      }
    },
  };
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
      parallel: deps.config.INVENTORY_BATCH_PARALLEL,
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
  const keys = [...new Set([...locks.keys.map((k) => k.sku), ...locks.skus])];
  return executorOf(deps).run({ job, meta, input: locks, lines, keys, apply });
}

export const inventoryHandlers = {
  'location.create': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => createLocation(trx, payload)),
  'location.update': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => updateLocation(trx, payload)),
  'inventory.adjust': (ctx, payload) =>
    grouped(ctx, { keys: payload.movements, skus: [], adjust: payload.movements }, (trx) =>
      adjustStock(trx, payload),
    ),
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
