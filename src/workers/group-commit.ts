import type { Job } from 'bullmq';
import type { Knex } from 'knex';
import { escapeLiteral } from 'pg';
import { DomainError } from '../errors/domain-error.js';
import type { Metrics } from '../ops/metrics.js';
import type { JobMeta } from '../queues/job.js';
import { applyOnce } from './apply-once.js';

/**
 * Group commit: the jobs a worker process has active at once are applied together in one
 * PostgreSQL transaction, one commit for all (docs/inventory.md, "Group commit").
 *
 * - Natural batching: while one batch runs, the next gathers whatever jobs arrive; a lone job
 *   runs at once through `applyOnce`, exactly as without group commit. A batch is bounded in jobs
 *   and in lines.
 * - In the batch: every job id is claimed in `applied_jobs` in one statement (an already-applied
 *   job gets its stored result back and takes no further part); `lock` takes every row lock the
 *   batch needs in one statement, in the global lock order, and answers a BatchState; each job is
 *   then decided in arrival order in memory (`plan`) and the decided jobs are written set-based
 *   (`flush`, one statement per table); a job the state cannot decide runs its domain function in
 *   its own savepoint, with its own actor and job id set for triggers and the outbox. Results are
 *   recorded in one statement, and the claims of jobs that broke a domain rule are dropped in it.
 * - A job that breaks a domain rule fails alone with its error (its savepoint, if any, rolled back).
 *   Any other error (deadlock, lost connection, serialization, a CHECK) rolls the whole batch
 *   back, and each of its jobs is then applied alone, in arrival order (its claim decides whether
 *   it was applied: a commit whose answer was lost is not applied twice). A job on its second
 *   attempt or later never joins a batch, so a job that keeps failing cannot stall the others.
 *
 * Queue-agnostic: a queue gives its lock step and, per job, the change to apply.
 */

export interface GroupJob<I, R> {
  job: Pick<Job, 'id' | 'queueName' | 'name' | 'attemptsMade'>;
  meta: JobMeta;
  /** What `lock` reads to know the rows the job touches. */
  input: I;
  /** Lines of the job, for the batch bound. */
  lines: number;
  /** What orders it against other jobs (skus): jobs sharing a key never run in two batches at once. */
  keys: string[];
  /** The job's change, inside the batch's (or its own) transaction: today's domain function. */
  apply: (trx: Knex.Transaction) => Promise<R>;
}

/**
 * What a queue keeps over one batch, from its lock step: the locked rows' figures, so that jobs
 * it knows are decided in memory and written set-based, one statement for all of them.
 */
export interface BatchState<I> {
  /**
   * Decides the job against the figures (the same rules and errors as its domain function) and
   * keeps its writes for `flush`: true. Throws its DomainError if it breaks a rule (the figures do
   * not change). False: the job applies through its domain function, in a savepoint.
   */
  plan(input: I, job: { id: string; actor: string }): boolean;
  /** Writes every job planned since the last flush, set-based; answers their results in plan order. */
  flush(trx: Knex.Transaction): Promise<unknown[]>;
  /** After a job applied through its domain function: reads again the figures it may have changed. */
  refresh(trx: Knex.Transaction, input: I): Promise<void>;
}

export interface GroupCommitOptions<I> {
  queue: string;
  maxJobs: number;
  maxLines: number;
  /** Most batches running at once (each on its own connection, on disjoint keys). */
  parallel: number;
  /** Locks every row the batch's jobs will lock, in the global lock order, in one statement. */
  lock: (trx: Knex.Transaction, inputs: I[]) => Promise<BatchState<I>>;
  metrics?: Metrics;
}

interface Pending<I> {
  item: GroupJob<I, unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type Outcome = { ok: true; result: unknown } | { ok: false; error: DomainError };

export class GroupCommit<I> {
  private readonly waiting: Pending<I>[] = [];
  /** Keys (skus) of the batches running now: a job on one of them waits for the next round. */
  private readonly busy = new Map<string, number>();
  private running = 0;

  constructor(
    private readonly db: Knex,
    private readonly options: GroupCommitOptions<I>,
  ) {}

  /** Applies the job once, alone or in a batch; resolves with its result or rejects with its error. */
  run<R>(item: GroupJob<I, R>): Promise<R> {
    if (item.job.attemptsMade > 0 || item.lines > this.options.maxLines) {
      return applyOnce(this.db, item.job, item.meta, item.apply);
    }
    return new Promise<R>((resolve, reject) => {
      this.waiting.push({ item, resolve: resolve as (value: unknown) => void, reject });
      this.pump();
    });
  }

  /**
   * Starts batches while fewer than `parallel` run and jobs can go: the jobs that arrived while
   * batches ran form the next ones. A job sharing a key with a running batch, or with a job left
   * waiting before it, waits: jobs on one key apply in arrival order, one batch at a time.
   */
  private pump(): void {
    while (this.running < this.options.parallel && this.waiting.length > 0) {
      const batch = this.take();
      if (batch.length === 0) return;
      const keys = batch.flatMap((p) => p.item.keys);
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

  private take(): Pending<I>[] {
    const blocked = new Set(this.busy.keys());
    const taken: Pending<I>[] = [];
    const left: Pending<I>[] = [];
    let lines = 0;
    for (const pending of this.waiting) {
      const { keys } = pending.item;
      const full =
        taken.length >= this.options.maxJobs ||
        (taken.length > 0 && lines + pending.item.lines > this.options.maxLines);
      if (full || keys.some((k) => blocked.has(k))) {
        for (const k of keys) blocked.add(k);
        left.push(pending);
        continue;
      }
      taken.push(pending);
      lines += pending.item.lines;
    }
    this.waiting.splice(0, this.waiting.length, ...left);
    return taken;
  }

  private async runBatch(batch: Pending<I>[]): Promise<void> {
    if (batch.length === 1) {
      this.options.metrics?.batchJobs.observe({ queue: this.options.queue, outcome: 'alone' }, 1);
      await this.alone(batch[0]!);
      return;
    }
    let outcomes: Map<Pending<I>, Outcome>;
    try {
      outcomes = await this.db.transaction((trx) => this.apply(trx, batch));
    } catch {
      this.options.metrics?.batchJobs.observe(
        { queue: this.options.queue, outcome: 'retried' },
        batch.length,
      );
      // Rolled back as a whole (or its commit's answer was lost): each job again, alone, in order.
      for (const pending of batch) await this.alone(pending);
      return;
    }
    this.options.metrics?.batchJobs.observe(
      { queue: this.options.queue, outcome: 'committed' },
      batch.length,
    );
    for (const pending of batch) {
      const outcome = outcomes.get(pending)!;
      if (outcome.ok) pending.resolve(outcome.result);
      else pending.reject(outcome.error);
    }
  }

  private async alone(pending: Pending<I>): Promise<void> {
    const { item } = pending;
    try {
      pending.resolve(await applyOnce(this.db, item.job, item.meta, item.apply));
    } catch (error) {
      pending.reject(error);
    }
  }

  private async apply(trx: Knex.Transaction, batch: Pending<I>[]): Promise<Map<Pending<I>, Outcome>> {
    const outcomes = new Map<Pending<I>, Outcome>();
    const claims = await claimJobs(
      trx,
      batch.map((p) => p.item.job),
    );
    const fresh: Pending<I>[] = [];
    for (const pending of batch) {
      const claim = claims.get(pending.item.job.id!)!;
      if (claim.claimed) fresh.push(pending);
      else outcomes.set(pending, { ok: true, result: claim.result });
    }
    if (fresh.length === 0) return outcomes;
    const state = await this.options.lock(
      trx,
      fresh.map((p) => p.item.input),
    );
    const applied: { id: string; result: unknown }[] = [];
    const failed: string[] = [];
    let planned: Pending<I>[] = [];
    const flush = async () => {
      if (planned.length === 0) return;
      const results = await state.flush(trx);
      planned.forEach((pending, i) => {
        outcomes.set(pending, { ok: true, result: results[i] });
        applied.push({ id: pending.item.job.id!, result: results[i] });
      });
      planned = [];
    };
    for (const pending of fresh) {
      const { job, meta, input } = pending.item;
      try {
        if (state.plan(input, { id: job.id!, actor: meta.actor })) {
          planned.push(pending);
          continue;
        }
      } catch (error) {
        if (!(error instanceof DomainError)) throw error;
        outcomes.set(pending, { ok: false, error });
        failed.push(job.id!);
        continue;
      }
      // Its domain function reads the database: what was planned before it goes first.
      await flush();
      await trx.raw(
        `savepoint group_job; select set_config('stockflow.actor', ${escapeLiteral(meta.actor)}, true), set_config('stockflow.job_id', ${escapeLiteral(job.id!)}, true)`,
      );
      try {
        const result = await pending.item.apply(trx);
        await trx.raw('release savepoint group_job');
        outcomes.set(pending, { ok: true, result });
        applied.push({ id: job.id!, result });
      } catch (error) {
        if (!(error instanceof DomainError)) throw error;
        await trx.raw('rollback to savepoint group_job; release savepoint group_job');
        outcomes.set(pending, { ok: false, error });
        failed.push(job.id!);
      }
      await state.refresh(trx, input);
    }
    await flush();
    await recordResults(trx, applied, failed);
    return outcomes;
  }
}

/**
 * Claims these job ids in one statement, in id order (two batches claiming the same ids cannot
 * deadlock). An id applied before answers its stored result; one being applied by another
 * transaction waits on its primary key until that one ends, as a lone claim does.
 */
async function claimJobs(
  trx: Knex.Transaction,
  jobs: Pick<Job, 'id' | 'queueName' | 'name'>[],
): Promise<Map<string, { claimed: true } | { claimed: false; result: unknown }>> {
  const { rows } = await trx.raw<{ rows: { job_id: string; claimed: boolean }[] }>(
    `with k as (select * from unnest(?::text[], ?::text[], ?::text[]) as k (job_id, queue, name)),
     ins as (
       insert into applied_jobs (job_id, queue, name)
       select job_id, queue, name from k order by job_id
       on conflict (job_id) do nothing
       returning job_id
     )
     select k.job_id, ins.job_id is not null as claimed from k left join ins using (job_id)`,
    [jobs.map((j) => j.id!), jobs.map((j) => j.queueName), jobs.map((j) => j.name)],
  );
  const claims = new Map<string, { claimed: true } | { claimed: false; result: unknown }>();
  const taken = rows.filter((r) => !r.claimed).map((r) => r.job_id);
  // A separate statement: it sees claims committed while the insert above waited on them.
  const results = new Map<string, unknown>();
  if (taken.length > 0) {
    const stored = await trx('applied_jobs').whereIn('job_id', taken).select('job_id', 'result');
    for (const row of stored as { job_id: string; result: unknown }[]) results.set(row.job_id, row.result);
  }
  for (const row of rows) {
    claims.set(
      row.job_id,
      row.claimed ? { claimed: true } : { claimed: false, result: results.get(row.job_id) ?? null },
    );
  }
  return claims;
}

/** Stores the results of the applied jobs and drops the claims of the failed ones, in one statement. */
async function recordResults(
  trx: Knex.Transaction,
  applied: { id: string; result: unknown }[],
  failed: string[],
): Promise<void> {
  await trx.raw(
    `with recorded as (
       update applied_jobs a set result = t.result::jsonb
       from unnest(?::text[], ?::text[]) as t (job_id, result)
       where a.job_id = t.job_id
       returning 1
     ), dropped as (
       delete from applied_jobs where job_id = any(?::text[]) returning 1
     )
     select (select count(*) from recorded) as recorded, (select count(*) from dropped) as dropped`,
    [applied.map((a) => a.id), applied.map((a) => JSON.stringify(a.result ?? null)), failed],
  );
}
