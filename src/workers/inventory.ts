import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { insertMovements, type NewMovement } from '../domain/ledger.js';
import { availableOf, type LevelKey, levelKey, lockCandidateLevels } from '../domain/levels.js';
import { createLocation, updateLocation } from '../domain/locations.js';
import { expireDue } from '../domain/orders.js';
import {
  commitReservation,
  createReservation,
  extendReservation,
  insertReservations,
  type PlannedReservation,
  planReservation,
  type ReserveInput,
  releaseReservation,
  reservationCreated,
  reserveMovements,
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
import { appendJobEvents } from '../events/outbox.js';
import { applyOnce } from './apply-once.js';
import { type BatchState, GroupCommit } from './group-commit.js';
import type { JobContext, QueueHandlers, WorkerDeps } from './processor.js';

/**
 * What a batched inventory job locks: levels by key, and (reservations without a location) every
 * active level of a sku. Jobs that lock a reservation first (commit, release, extend, expiry) and
 * location jobs run alone: their lock order is not the batch's. An adjust and a reservation carry
 * their request: the batch decides them in memory (planAdjust, planReservation) and writes them
 * with the others', set-based.
 */
interface InventoryLocks {
  keys: LevelKey[];
  skus: string[];
  adjust?: AdjustLine[];
  reserve?: ReserveInput;
}

type LockedLevel = LevelFigures & LevelKey & { priority: number; active: boolean };
type JobMovement = NewMovement & { jobId: string; actor: string };
type Planned =
  | { kind: 'adjust'; movements: JobMovement[] }
  | {
      kind: 'reserve';
      movements: JobMovement[];
      reservation: PlannedReservation;
      job: { id: string; actor: string };
    };

/** Locks every level the batch touches in one `SELECT … FOR UPDATE`, in (sku, location) order. */
async function lockInventory(
  trx: Knex.Transaction,
  inputs: InventoryLocks[],
): Promise<BatchState<InventoryLocks>> {
  const keys = new Map<string, LevelKey>();
  for (const input of inputs) for (const k of input.keys) keys.set(levelKey(k), k);
  const skus = [...new Set(inputs.flatMap((i) => i.skus))];
  const levels = new Map<string, LockedLevel>();
  for (const row of await lockCandidateLevels(trx, skus, [...keys.values()])) levels.set(levelKey(row), row);
  let planned: Planned[] = [];

  const planAdjustJob = (lines: AdjustLine[], job: { id: string; actor: string }) => {
    // A level not locked (not created yet, or an unknown sku or location): adjustStock decides.
    if (!lines.every((l) => levels.has(levelKey(l)))) return false;
    const { movements, after } = planAdjust(levels, lines);
    for (const [key, figures] of after) Object.assign(levels.get(key)!, figures);
    planned.push({
      kind: 'adjust',
      movements: movements.map((m) => ({ ...m, jobId: job.id, actor: job.actor })),
    });
    return true;
  };

  const planReserveJob = (input: ReserveInput, job: { id: string; actor: string }) => {
    const lines = input.lines.map((l, index) => ({ ...l, index }));
    const explicit = new Set(
      lines.flatMap((l) => (l.location ? [levelKey({ sku: l.sku, location: l.location })] : [])),
    );
    const open = new Set(lines.filter((l) => !l.location).map((l) => l.sku));
    const rows = [...levels.values()].filter(
      (r) => explicit.has(levelKey(r)) || (open.has(r.sku) && r.active),
    );
    // A named level that does not exist yet, or a sku without an active level: createReservation decides.
    if ([...explicit].some((k) => !levels.has(k))) return false;
    if ([...open].some((sku) => !rows.some((r) => r.sku === sku && r.active))) return false;
    const allocations = planReservation(
      lines,
      rows.map((r) => ({
        sku: r.sku,
        location: r.location,
        available: availableOf(r),
        priority: r.priority,
        active: r.active,
      })),
    );
    for (const a of allocations) levels.get(levelKey(a))!.reserved += a.quantity;
    const id = randomUUID();
    planned.push({
      kind: 'reserve',
      job,
      reservation: { id, input, allocations },
      movements: reserveMovements(id, input.reference, allocations).map((m) => ({
        ...m,
        jobId: job.id,
        actor: job.actor,
      })),
    });
    return true;
  };

  return {
    plan(input, job) {
      if (input.adjust) return planAdjustJob(input.adjust, job);
      if (input.reserve) return planReserveJob(input.reserve, job);
      return false;
    },
    async flush(db) {
      const reserves = planned.flatMap((p) => (p.kind === 'reserve' ? [p] : []));
      // The reservations first: their movements refer to them.
      const reservations = await insertReservations(
        db,
        reserves.map((p) => p.reservation),
      );
      const written = await insertMovements(
        db,
        planned.flatMap((p) => p.movements),
      );
      await appendJobEvents(
        db,
        reservations.map((r, i) => ({
          ...reservationCreated(r),
          jobId: reserves[i]!.job.id,
          actor: reserves[i]!.job.actor,
        })),
      );
      let at = 0;
      let r = 0;
      const results = planned.map((p) => {
        const movements = written.slice(at, at + p.movements.length);
        at += p.movements.length;
        return p.kind === 'adjust' ? { movements } : reservations[r++];
      });
      planned = [];
      return results;
    },
    async refresh(db, input) {
      const touched = [...new Set([...input.keys.map((k) => k.sku), ...input.skus])];
      const { rows } = await db.raw<{ rows: LockedLevel[] }>(
        `select l.sku, l.location, l.on_hand, l.reserved, l.safety_stock, c.priority, c.active
         from inventory_levels l join locations c on c.code = l.location where l.sku = any(?::text[])`,
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
        reserve: payload,
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
