import type { Knex } from 'knex';
import type { Logger } from '../log.js';

/** One finished job attempt, as the `jobs` report reads it. */
export interface JobRun {
  queue: string;
  name: string;
  jobId: string | null;
  attempt: number;
  /** `retried`: a failed attempt that will be tried again; `failed`: a failure for good. */
  outcome: 'completed' | 'failed' | 'retried';
  errorCode: string | null;
  waitMs: number | null;
  runMs: number;
  finishedAt: Date;
}

/** Records finished attempts (`createJobRunLog`). */
export interface JobRunLog {
  record(run: JobRun): void;
  /** Writes what is buffered now; never rejects (a failed insert is logged). */
  flush(): Promise<void>;
}

/** How long attempts gather before one insert writes them. */
const flushMs = 100;

/**
 * Records finished attempts in `job_runs`, the platform's own record for the `jobs` report (BullMQ
 * keeps finished jobs only for a while and by count, not by window). Attempts finishing within
 * 100 ms share one insert, made after the job's own transaction and never holding the job up: one
 * transaction per attempt would cost a job run alone (group commit off) four more round trips.
 * A failed insert is logged and its rows lost, which costs the report a few attempts, not the job.
 * The insert commits asynchronously (`synchronous_commit = off`): it does not wait for its WAL to
 * reach the disk, which would add a flush to every group-commit batch (the inventory worker's
 * throughput is bounded by its commits' flushes); a Postgres crash or a killed worker may lose the
 * last fraction of a second of these rows, never a job's own writes. A worker that closes flushes
 * (`stopWorkers`).
 */
export function createJobRunLog(db: Knex, log: Logger): JobRunLog {
  let buffered: JobRun[] = [];
  let timer: NodeJS.Timeout | undefined;
  const flush = async (): Promise<void> => {
    clearTimeout(timer);
    timer = undefined;
    const runs = buffered;
    buffered = [];
    if (runs.length === 0) return;
    await db
      .transaction(async (trx) => {
        await trx.raw('set local synchronous_commit = off');
        await trx.raw(
          `insert into job_runs (queue, name, job_id, attempt, outcome, error_code, wait_ms, run_ms, finished_at)
       select * from unnest(?::text[], ?::text[], ?::text[], ?::int[], ?::text[], ?::text[], ?::int[], ?::int[],
                            ?::timestamptz[])`,
          [
            runs.map((r) => r.queue),
            runs.map((r) => r.name),
            runs.map((r) => r.jobId),
            runs.map((r) => r.attempt),
            runs.map((r) => r.outcome),
            runs.map((r) => r.errorCode),
            runs.map((r) => r.waitMs),
            runs.map((r) => r.runMs),
            runs.map((r) => r.finishedAt),
          ] as Knex.RawBinding[],
        );
      })
      .catch((err: unknown) => log.warn({ err, runs: runs.length }, 'could not record job runs'));
  };
  return {
    record(run) {
      buffered.push(run);
      timer ??= setTimeout(() => void flush(), flushMs);
    },
    flush,
  };
}

/**
 * Deletes attempts that finished more than `olderThanDays` ago, in batches (index job_runs_finished),
 * so the record the `jobs` report reads stays bounded. Returns how many went.
 */
export async function pruneJobRuns(db: Knex, olderThanDays: number, batchSize = 5000): Promise<number> {
  let deleted = 0;
  for (;;) {
    const result = await db.raw<{ rowCount: number }>(
      `delete from job_runs where id in (
         select id from job_runs where finished_at < now() - make_interval(days => ?) limit ?)`,
      [olderThanDays, batchSize],
    );
    deleted += result.rowCount;
    if (result.rowCount < batchSize) return deleted;
  }
}
