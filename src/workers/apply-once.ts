import type { Job } from 'bullmq';
import type { Knex } from 'knex';
import { claimJobs, recordJobResults } from '../db/applied-jobs.js';
import { endJobSavepoint, type JobContext, openJobSavepoint } from '../db/job-context.js';
import { DomainError } from '../errors.js';
import type { JobMeta } from '../queues/job.js';

/**
 * The one path by which a job's change is applied exactly once, alone or with others in one
 * transaction (group commit: src/workers/group-commit.ts gathers the batches). A lone job is a
 * batch of one through the same steps; what a queue's jobs lock and how they are decided in
 * memory come from its domain (a `BatchDefinition`), so this runtime knows nothing of stock.
 */

/** What a queue's domain gives to apply several of its jobs in one transaction. */
export interface BatchDefinition<I> {
  /** What orders a job against others (skus): jobs sharing a key never run in two batches at once. */
  keys(input: I): string[];
  /** Lines of the job, for the batch's bound. */
  lines(input: I): number;
  /** Locks every row the jobs will lock, in the global lock order, in one statement. */
  lock(trx: Knex.Transaction, inputs: I[]): Promise<BatchState<I>>;
}

/** What the lock step answers: the locked rows' figures, to decide jobs in memory and write them set-based. */
export interface BatchState<I> {
  /**
   * Decides the job against the figures (the same rules and errors as its domain function) and
   * keeps its writes for `flush`: true. Throws its DomainError if it breaks a rule (the figures do
   * not change). False: the job applies through its domain function.
   */
  plan(input: I, job: JobContext): boolean;
  /** Writes every job planned since the last flush, set-based; answers their results in plan order. */
  flush(trx: Knex.Transaction): Promise<unknown[]>;
  /** After a job applied through its domain function: reads again the figures it may have changed. */
  refresh(trx: Knex.Transaction, input: I): Promise<void>;
}

export interface OnceJob<I, R> {
  job: Pick<Job, 'id' | 'queueName' | 'name'>;
  meta: JobMeta;
  /** What the batch definition reads of the job. */
  input: I;
  /** The job's domain function, inside the transaction. */
  apply: (trx: Knex.Transaction) => Promise<R>;
}

export type Outcome = { ok: true; result: unknown } | { ok: false; error: DomainError };

const contextOf = (item: OnceJob<unknown, unknown>): JobContext => ({
  actor: item.meta.actor,
  jobId: item.job.id!,
});

/**
 * Applies jobs in one transaction: claims every job id in `applied_jobs` (a job applied before
 * answers its stored result and takes no further part), takes the batch's locks, decides each job
 * in arrival order in memory (`plan`) or through its domain function, writes the decided jobs
 * set-based (`flush`) and records the results.
 * - A lone job: its actor and job id are set for the whole transaction, its domain function runs
 *   without a savepoint, and any error (a broken rule included) rolls it all back and is thrown.
 * - Several: a job run through its domain function gets a savepoint with its own actor and job id.
 *   A job that breaks a domain rule fails alone (its savepoint rolled back, its claim dropped);
 *   any other error rolls the batch back and is thrown.
 */
export async function applyJobs<I>(
  db: Knex,
  batch: BatchDefinition<I> | undefined,
  items: OnceJob<I, unknown>[],
): Promise<Outcome[]> {
  const lone = items.length === 1;
  return db.transaction(async (trx) => {
    const outcomes: Outcome[] = [];
    const claims = await claimJobs(
      trx,
      items.map(({ job }) => ({ id: job.id!, queue: job.queueName, name: job.name })),
      lone ? contextOf(items[0]!) : undefined,
    );
    const fresh: number[] = [];
    items.forEach((item, i) => {
      const claim = claims.get(item.job.id!)!;
      if (claim.claimed) fresh.push(i);
      else outcomes[i] = { ok: true, result: claim.result };
    });
    if (fresh.length === 0) return outcomes;
    const state = await batch?.lock(
      trx,
      fresh.map((i) => items[i]!.input),
    );
    const applied: { id: string; result: unknown }[] = [];
    const failed: string[] = [];
    const succeed = (i: number, result: unknown) => {
      outcomes[i] = { ok: true, result };
      applied.push({ id: items[i]!.job.id!, result });
    };
    const fail = (i: number, error: DomainError) => {
      outcomes[i] = { ok: false, error };
      failed.push(items[i]!.job.id!);
    };
    let planned: number[] = [];
    const flush = async () => {
      if (planned.length === 0) return;
      const results = await state!.flush(trx);
      planned.forEach((i, n) => {
        succeed(i, results[n]);
      });
      planned = [];
    };
    for (const i of fresh) {
      const item = items[i]!;
      try {
        if (state?.plan(item.input, contextOf(item))) {
          planned.push(i);
          continue;
        }
      } catch (error) {
        if (lone || !(error instanceof DomainError)) throw error;
        fail(i, error);
        continue;
      }
      // Its domain function reads the database: what was planned before it goes first.
      await flush();
      if (lone) {
        succeed(i, await item.apply(trx));
        continue;
      }
      await openJobSavepoint(trx, contextOf(item));
      try {
        const result = await item.apply(trx);
        await endJobSavepoint(trx, true);
        succeed(i, result);
      } catch (error) {
        if (!(error instanceof DomainError)) throw error;
        await endJobSavepoint(trx, false);
        fail(i, error);
      }
      await state?.refresh(trx, item.input);
    }
    await flush();
    await recordJobResults(trx, applied, failed);
    return outcomes;
  });
}

/** Applies one job (a batch of one): its result, or its error thrown. */
export async function applyJob<I, R>(
  db: Knex,
  batch: BatchDefinition<I> | undefined,
  item: OnceJob<I, R>,
): Promise<R> {
  const [outcome] = await applyJobs(db, batch, [item]);
  return (outcome as { result: R }).result;
}

/** A job that takes no part in batches: claimed, applied through its domain function, recorded, in one transaction. */
export function applyOnce<R>(
  db: Knex,
  job: Pick<Job, 'id' | 'queueName' | 'name'>,
  meta: JobMeta,
  apply: (trx: Knex.Transaction) => Promise<R>,
): Promise<R> {
  return applyJob(db, undefined, { job, meta, input: undefined, apply });
}
