import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { JobContext } from '../../db/job-context.js';
import { type LevelKey, levelKey } from '../levels.js';
import { createOrder } from '../orders.js';
import { adjustStock, countStock, setSafetyStock, transferStock } from '../stock.js';
import { type LockedLevel, lockBatchLevels, readLevels } from './lock.js';
import { decide, type Request } from './planner.js';
import { createReservation } from './reserve.js';
import { type DecidedJob, writeDecisions } from './writer.js';

/**
 * The inventory's batch definition for the group-commit executor (src/workers/group-commit.ts):
 * what each job that locks levels only brings to a batch, the batch's lock step, and the state it
 * decides jobs against. A lone job is a batch of one through the same steps.
 */

/** What a job brings: a request decided in memory, or only the levels its domain function locks. */
export type BatchInput = Request | { kind: 'locks'; keys: LevelKey[]; skus: string[] };

/** A job of a batch: its input and its domain function (run when the batch cannot decide it in memory). */
interface BatchJob<R> {
  input: BatchInput;
  apply: (db: Knex) => Promise<R>;
}

/** Levels by key, and (reservations without a location) every active level of a sku. */
function locksOf(input: BatchInput): { keys: LevelKey[]; skus: string[] } {
  if (input.kind === 'adjust') return { keys: input.lines, skus: [] };
  if (input.kind === 'locks') return input;
  const lines = input.reserve.lines;
  return {
    keys: lines.flatMap((l) => (l.location ? [{ sku: l.sku, location: l.location }] : [])),
    skus: lines.flatMap((l) => (l.location ? [] : [l.sku])),
  };
}

const locks = (keys: LevelKey[], skus: string[] = []): BatchInput => ({ kind: 'locks', keys, skus });
const batchJob = <R>(input: BatchInput, apply: (db: Knex) => Promise<R>): BatchJob<R> => ({ input, apply });

/** Every job that locks levels only, as a batch job. Jobs that lock a reservation or an order first stay alone. */
export const inventoryJobs = {
  adjust: (payload: Parameters<typeof adjustStock>[1]) =>
    batchJob({ kind: 'adjust', lines: payload.movements }, (db) => adjustStock(db, payload)),
  count: (payload: Parameters<typeof countStock>[1]) =>
    batchJob(locks([payload]), (db) => countStock(db, payload)),
  transfer: (payload: Parameters<typeof transferStock>[1]) =>
    batchJob(
      locks([
        { sku: payload.sku, location: payload.from },
        { sku: payload.sku, location: payload.to },
      ]),
      (db) => transferStock(db, payload),
    ),
  setSafetyStock: (payload: Parameters<typeof setSafetyStock>[1]) =>
    batchJob(locks([payload]), (db) => setSafetyStock(db, payload)),
  reserve: (payload: Parameters<typeof createReservation>[1]) =>
    batchJob({ kind: 'reserve', reserve: payload }, (db) => createReservation(db, payload)),
  // The order's reservation allocates over every active level of its skus.
  createOrder: (payload: Parameters<typeof createOrder>[1]) =>
    batchJob(
      locks(
        [],
        payload.lines.map((l) => l.sku),
      ),
      (db) => createOrder(db, payload),
    ),
};

/** What the batch keeps between its lock step and its commit; see the executor's BatchState. */
interface InventoryBatchState {
  plan(input: BatchInput, job: JobContext): boolean;
  flush(db: Knex): Promise<unknown[]>;
  refresh(db: Knex, input: BatchInput): Promise<void>;
}

export const inventoryBatch = {
  /** Skus: jobs sharing one never run in two batches at once. */
  keys(input: BatchInput): string[] {
    const { keys, skus } = locksOf(input);
    return [...new Set([...keys.map((k) => k.sku), ...skus])];
  },
  /** Lines, for the batch's bound. */
  lines(input: BatchInput): number {
    const { keys, skus } = locksOf(input);
    return Math.max(1, keys.length + skus.length);
  },
  /**
   * Locks every level the jobs touch in one ordered statement and answers the state that decides
   * them: adjusts and reservations in memory (`decide`), written set-based on `flush`. A lone job
   * that only its domain function decides takes its locks there.
   */
  async lock(db: Knex, inputs: BatchInput[]): Promise<InventoryBatchState> {
    const levels = new Map<string, LockedLevel>();
    const alone = inputs.length === 1 && inputs[0]!.kind === 'locks';
    if (!alone) {
      const all = inputs.map(locksOf);
      const rows = await lockBatchLevels(
        db,
        all.flatMap((l) => l.keys),
        [...new Set(all.flatMap((l) => l.skus))],
      );
      for (const row of rows) levels.set(levelKey(row), row);
    }
    // A batch of jobs only their domain functions decide (new orders) never reads the figures again.
    const decidable = inputs.some((i) => i.kind !== 'locks');
    let planned: DecidedJob[] = [];
    return {
      plan(input, job) {
        if (input.kind === 'locks') return false;
        const decision = decide(levels, input, randomUUID);
        if (!decision) return false;
        planned.push({ ...decision, job });
        return true;
      },
      async flush(trx) {
        const results = await writeDecisions(trx, planned);
        planned = [];
        return results;
      },
      async refresh(trx, input) {
        if (!decidable) return;
        const { keys, skus } = locksOf(input);
        const rows = await readLevels(trx, [...new Set([...keys.map((k) => k.sku), ...skus])]);
        // Only rows this transaction holds: those locked at the start, and those the job locked.
        const own = new Set(keys.map(levelKey));
        for (const row of rows) {
          if (levels.has(levelKey(row)) || own.has(levelKey(row))) levels.set(levelKey(row), row);
        }
      },
    };
  },
};
