import type { FastifyRequest } from 'fastify';
import type { Knex } from 'knex';
import { setJobContext } from '../db/job-context.js';
import { DomainError } from '../errors/domain-error.js';
import { HttpProblem } from '../errors/http-problem.js';
import { principalOf } from './auth.js';
import type { ApiDeps } from './deps.js';
import { statusForCode } from './problems.js';

/**
 * The one transaction the API opens, for the writes docs/architecture.md lists under "What the API
 * writes itself" (webhook endpoint settings, suppliers, a manual delivery retry); everything else
 * changes only inside a job. `work` runs with the caller recorded as the actor of its events, a
 * broken rule answers its problem, and the live streams are woken once the events are committed.
 */
export async function writeDirectly<T>(
  deps: ApiDeps,
  request: FastifyRequest,
  work: (trx: Knex.Transaction) => Promise<T>,
): Promise<T> {
  let result: T;
  try {
    result = await deps.db.transaction(async (trx) => {
      await setJobContext(trx, { actor: principalOf(request).name });
      return work(trx);
    });
  } catch (error) {
    if (!(error instanceof DomainError)) throw error;
    throw new HttpProblem(statusForCode(error.code), error.code, error.message, { details: error.details });
  }
  deps.events.wake();
  return result;
}
