import type { Knex } from 'knex';
import { escapeLiteral } from 'pg';

/**
 * Who a transaction writes for: the actor (an API key's name, `system`, `reconcile`) and the job
 * id. Triggers (audit log, ledger, stock states, order history) and the outbox record them from
 * the transaction-local settings `stockflow.actor` and `stockflow.job_id`; this module is the only
 * writer of those two settings.
 */
export interface JobContext {
  actor: string;
  /** Absent outside a job (an API write, the alert evaluator). */
  jobId?: string;
}

const settings = (actor: string, jobId: string) =>
  `set_config('stockflow.actor', ${actor}, true), set_config('stockflow.job_id', ${jobId}, true)`;

/**
 * The select-list that sets the context inside another statement (the job claim sends it with its
 * insert, one round trip); its two placeholders take `jobContextBindings`.
 */
export const jobContextSelect = settings('?', '?');

export const jobContextBindings = (context: JobContext): string[] => [context.actor, context.jobId ?? ''];

/** Sets the context for the rest of this transaction. */
export async function setJobContext(db: Knex, context: JobContext): Promise<void> {
  await db.raw(`select ${jobContextSelect}`, jobContextBindings(context));
}

/**
 * Opens a savepoint and sets the context of one job of a batch in the same round trip (literal
 * values: a multi-statement query takes no parameters). `endJobSavepoint` closes it, keeping or
 * undoing what the job wrote; the context stays until the next job sets its own.
 */
export async function openJobSavepoint(db: Knex, context: JobContext): Promise<void> {
  await db.raw(
    `savepoint stockflow_job; select ${settings(escapeLiteral(context.actor), escapeLiteral(context.jobId ?? ''))}`,
  );
}

export async function endJobSavepoint(db: Knex, keep: boolean): Promise<void> {
  await db.raw(
    keep
      ? 'release savepoint stockflow_job'
      : 'rollback to savepoint stockflow_job; release savepoint stockflow_job',
  );
}
