import type { Job } from 'bullmq';
import type { Knex } from 'knex';
import type { Metrics } from '../ops/metrics.js';
import { applyJob, applyJobs, type BatchDefinition, type OnceJob, type Outcome } from './apply-once.js';
import type { JobContext, WorkerDeps } from './processor.js';

/**
 * Group commit: the jobs a worker process has active at once are applied together in one
 * PostgreSQL transaction, one commit for all (docs/inventory.md, "Group commit"), through
 * `applyJobs` with the queue's batch definition.
 *
 * - Natural batching: while one batch runs, the next gathers whatever jobs arrive; a lone job runs
 *   at once as a batch of one. A batch is bounded in jobs and in lines.
 * - A job that breaks a domain rule fails alone with its error. Any other error rolls the whole
 *   batch back, and each of its jobs is then applied alone, in arrival order (its claim decides
 *   whether it was applied: a commit whose answer was lost is not applied twice). A job on its
 *   second attempt or later never joins a batch, so a job that keeps failing cannot stall the others.
 *
 * Runtime only: what a job locks, how it is decided and written come from the batch definition;
 * keys are opaque strings that order jobs against each other.
 */

export interface Limits {
  maxJobs: number;
  maxLines: number;
}

export interface GroupCommitOptions extends Limits {
  queue: string;
  /** Most batches running at once (each on its own connection, on disjoint keys). */
  parallel: number;
  metrics?: Metrics;
}

/** What `take` reads of a waiting job. */
export interface Waiting {
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

export class GroupCommit<I> {
  private waiting: Pending<I>[] = [];
  /** Keys of the batches running now: a job on one of them waits for the next round. */
  private readonly busy = new Map<string, number>();
  private running = 0;

  constructor(
    private readonly db: Knex,
    private readonly batch: BatchDefinition<I>,
    private readonly options: GroupCommitOptions,
  ) {}

  /** Applies the job once, alone or in a batch; resolves with its result or rejects with its error. */
  run<R>(item: OnceJob<I, R> & { job: Pick<Job, 'attemptsMade'> }): Promise<R> {
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
  { deps, job, meta }: JobContext,
  batch: BatchDefinition<I>,
  { input, apply }: { input: I; apply: (trx: Knex.Transaction) => Promise<R> },
): Promise<R> {
  const item = { job, meta, input, apply };
  if (!deps.config.INVENTORY_GROUP_COMMIT) return applyJob(deps.db, batch, item);
  return executorOf(deps, job.queueName, batch).run(item);
}
