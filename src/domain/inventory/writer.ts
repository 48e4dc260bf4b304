import type { Knex } from 'knex';
import type { JobContext } from '../../db/job-context.js';
import { appendEvents } from '../../events/outbox.js';
import type { Movement } from '../../schemas/inventory.js';
import type { Reservation } from '../../schemas/reservations.js';
import { insertMovements } from '../ledger.js';
import { insertReservations, reservationCreated } from '../reservations.js';
import type { Decision } from './planner.js';

/** A decided request, with the job it belongs to (absent: the transaction's own job context). */
export type DecidedJob = Decision & { job?: JobContext };

/**
 * Writes decided adjusts and reservations, set-based: the reservations first (their movements
 * refer to them), then every ledger row in one statement (its trigger applies each row to its
 * level and writes `stock.moved`), then the `reservation.created` events. Each row carries its
 * job's id and actor, so the decisions of several jobs go in one statement each. Answers what the
 * domain function would: `{ movements }` for an adjust, the reservation for a reservation.
 */
export async function writeDecisions(
  db: Knex,
  decided: DecidedJob[],
): Promise<({ movements: Movement[] } | Reservation)[]> {
  const reserves = decided.flatMap((d) => (d.kind === 'reserve' ? [d] : []));
  const reservations = await insertReservations(
    db,
    reserves.map((d) => d.reservation),
  );
  const stamp = (job: JobContext | undefined) => (job ? { jobId: job.jobId, actor: job.actor } : {});
  const written = await insertMovements(
    db,
    decided.flatMap((d) => d.movements.map((m) => ({ ...m, ...stamp(d.job) }))),
  );
  await appendEvents(
    db,
    reservations.map((r, i) => ({ ...reservationCreated(r), ...stamp(reserves[i]!.job) })),
  );
  let at = 0;
  let r = 0;
  return decided.map((d) => {
    const movements = written.slice(at, at + d.movements.length);
    at += d.movements.length;
    return d.kind === 'adjust' ? { movements } : reservations[r++]!;
  });
}
