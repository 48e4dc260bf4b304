import type { Job } from 'bullmq';
import type { Knex } from 'knex';
import { claimJobs, recordJobResults } from '../db/applied-jobs.js';
import { endJobSavepoint, type JobContext, openJobSavepoint } from '../db/job-context.js';
import { DomainError } from '../errors/domain-error.js';
import type { Metrics } from '../ops/metrics.js';
import type { JobMeta } from '../queues/job.js';
import type { JobContext as HandlerContext, WorkerDeps } from './processor.js';

/**
 * The one path by which a job's change is applied exactly once, and group commit: the jobs a
 * worker process has active at once are applied together in one PostgreSQL transaction, one
 * commit for all (docs/inventory.md, "One write path, and group commit").
 *
 * - A lone job is a batch of one through the same steps (`applyJobs`): claim, lock step, decide
 *   in memory or run its domain function, write, record. `applyOnce` is that path for jobs that
 *   take no part in batches.
 * - Natural batching: while one batch runs, the next gathers whatever jobs arrive; a lone job runs
 *   at once. A batch is bounded in jobs and in lines.
 * - A job that breaks a domain rule fails alone with its error. Any other error rolls the whole
 *   batch back, and each of its jobs is then applied alone, in arrival order (its claim decides
 *   whether it was applied: a commit whose answer was lost is not applied twice). A job on its
 *   second attempt or later never joins a batch, so a job that keeps failing cannot stall the others.
 *
 * Runtime only: what a job locks, how it is decided and written come from its queue's batch
 * definition (the domain's); keys are opaque strings that order jobs against each other.
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

type Outcome = { ok: true; result: unknown } | { ok: false; error: DomainError };

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
async function applyJobs<I>(
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

interface Limits {
  maxJobs: number;
  maxLines: number;
}

interface GroupCommitOptions extends Limits {
  queue: string;
  /** Most batches running at once (each on its own connection, on disjoint keys). */
  parallel: number;
  metrics?: Metrics;
}

/** What `take` reads of a waiting job. */
interface Waiting {
  keys: string[];
  lines: number;
}

/**
 * The next batch out of the waiting jobs, in arrival order, within the limits: a job sharing a key
 * with a running batch (`busy`), or with a job left waiting before it, waits, so jobs on one key
 * apply in arrival order, one batch at a time. A job with more lines than the bound goes alone.
 */
export function take<P extends Waiting>(
  waiting: P[],
  busy: Iterable<string>,
  limits: Limits,
): { taken: P[]; left: P[] } {
  const blocked = new Set(busy);
  const taken: P[] = [];
  const left: P[] = [];
  let lines = 0;
  for (const pending of waiting) {
    const full =
      taken.length >= limits.maxJobs || (taken.length > 0 && lines + pending.lines > limits.maxLines);
    if (full || pending.keys.some((k) => blocked.has(k))) {
      for (const k of pending.keys) blocked.add(k);
      left.push(pending);
      continue;
    }
    taken.push(pending);
    lines += pending.lines;
  }
  return { taken, left };
}

type Item<I> = OnceJob<I, unknown> & { job: Pick<Job, 'attemptsMade'> };

interface Pending<I> extends Waiting {
  item: Item<I>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

class GroupCommit<I> {
  private waiting: Pending<I>[] = [];
  /** Each job id waiting or in a running batch, with what its run will answer. */
  private readonly inFlight = new Map<string, Promise<unknown>>();
  /** Keys of the batches running now: a job on one of them waits for the next round. */
  private readonly busy = new Map<string, number>();
  private running = 0;

  constructor(
    private readonly db: Knex,
    private readonly batch: BatchDefinition<I>,
    private readonly options: GroupCommitOptions,
  ) {}

  /**
   * Applies the job once, alone or in a batch; resolves with its result or rejects with its error.
   * The same job given again while its run is waiting or running (BullMQ hands it out a second time
   * when its lock was lost, a Redis failover say) shares that run: two runs of one id in one batch
   * would both win their claim in its one statement, and apply twice.
   */
  run<R>(item: OnceJob<I, R> & { job: Pick<Job, 'attemptsMade'> }): Promise<R> {
    const id = item.job.id!;
    const current = this.inFlight.get(id);
    if (current) return current as Promise<R>;
    const run = this.start(item);
    this.inFlight.set(id, run);
    const done = () => this.inFlight.delete(id);
    run.then(done, done);
    return run;
  }

  private start<R>(item: OnceJob<I, R> & { job: Pick<Job, 'attemptsMade'> }): Promise<R> {
    const lines = this.batch.lines(item.input);
    if (item.job.attemptsMade > 0 || lines > this.options.maxLines)
      return applyJob(this.db, this.batch, item);
    return new Promise<R>((resolve, reject) => {
      this.waiting.push({
        item,
        keys: this.batch.keys(item.input),
        lines,
        resolve: resolve as (value: unknown) => void,
        reject,
      });
      this.pump();
    });
  }

  /** Starts batches while fewer than `parallel` run and jobs can go: the jobs that arrived while batches ran form the next ones. */
  private pump(): void {
    while (this.running < this.options.parallel && this.waiting.length > 0) {
      const { taken: batch, left } = take(this.waiting, this.busy.keys(), this.options);
      this.waiting = left;
      if (batch.length === 0) return;
      const keys = batch.flatMap((p) => p.keys);
      for (const k of keys) this.busy.set(k, (this.busy.get(k) ?? 0) + 1);
      this.running++;
      void this.runBatch(batch)
        .catch((error) => {
          for (const p of batch) p.reject(error);
        })
        .finally(() => {
          for (const k of keys) {
            const n = this.busy.get(k)! - 1;
            if (n === 0) this.busy.delete(k);
            else this.busy.set(k, n);
          }
          this.running--;
          this.pump();
        });
    }
  }

  private async runBatch(batch: Pending<I>[]): Promise<void> {
    const observe = (outcome: 'alone' | 'committed' | 'retried') =>
      this.options.metrics?.batchJobs.observe({ queue: this.options.queue, outcome }, batch.length);
    if (batch.length === 1) {
      observe('alone');
      await this.alone(batch[0]!);
      return;
    }
    let outcomes: Outcome[];
    try {
      outcomes = await applyJobs(
        this.db,
        this.batch,
        batch.map((p) => p.item),
      );
    } catch {
      observe('retried');
      // Rolled back as a whole (or its commit's answer was lost): each job again, alone, in order.
      for (const pending of batch) await this.alone(pending);
      return;
    }
    observe('committed');
    batch.forEach((pending, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) pending.resolve(outcome.result);
      else pending.reject(outcome.error);
    });
  }

  private async alone(pending: Pending<I>): Promise<void> {
    try {
      pending.resolve(await applyJob(this.db, this.batch, pending.item));
    } catch (error) {
      pending.reject(error);
    }
  }
}

/** One executor per worker process (per set of worker deps) and queue, made on first use. */
const executors = new WeakMap<WorkerDeps, Map<string, GroupCommit<never>>>();

function executorOf<I>(deps: WorkerDeps, queue: string, batch: BatchDefinition<I>): GroupCommit<I> {
  let byQueue = executors.get(deps);
  if (!byQueue) {
    byQueue = new Map();
    executors.set(deps, byQueue);
  }
  let executor = byQueue.get(queue) as GroupCommit<I> | undefined;
  if (!executor) {
    executor = new GroupCommit<I>(deps.db, batch, {
      queue,
      maxJobs: deps.config.INVENTORY_BATCH_MAX_JOBS,
      maxLines: deps.config.INVENTORY_BATCH_MAX_LINES,
      parallel: deps.config.INVENTORY_BATCH_PARALLEL,
      metrics: deps.metrics,
    });
    byQueue.set(queue, executor as GroupCommit<never>);
  }
  return executor;
}

/**
 * Applies a handler's job through its queue's batch definition: in a group-commit batch when
 * INVENTORY_GROUP_COMMIT is on, else as a batch of one.
 */
export function batched<I, R>(
  { deps, job, meta }: HandlerContext,
  batch: BatchDefinition<I>,
  { input, apply }: { input: I; apply: (trx: Knex.Transaction) => Promise<R> },
): Promise<R> {
  const item = { job, meta, input, apply };
  if (!deps.config.INVENTORY_GROUP_COMMIT) return applyJob(deps.db, batch, item);
  return executorOf(deps, job.queueName, batch).run(item);
}
