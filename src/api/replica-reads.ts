import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { type Db, isServiceUnavailable } from '../db/knex.js';
import { isLsn, type ReplicaPosition, readWalPosition } from '../db/wal-position.js';
import { HttpProblem } from '../errors/http-problem.js';
import type { ApiDeps } from './deps.js';

/**
 * Reads that may lag go to the replica (DATABASE_REPLICA_URL), with read-your-writes across the
 * primary and the replica by WAL position (docs/architecture.md, "Read replicas"):
 * - every write answer carries `X-Stockflow-LSN`, the primary's position read after its commit:
 *   a 2xx other than 202 to a mutation of /api (the API's own writes, `Prefer: wait` outcomes), and
 *   `GET /api/jobs/:id` of a completed job;
 * - a read that may lag and sends it back (`X-Stockflow-LSN` or `?lsn=`) is served by the replica
 *   once it has replayed that far, waiting up to REPLICA_WAIT_MS, else by the primary;
 * - without it, by the replica if it tells its position within REPLICA_WAIT_MS, and the answer says
 *   how stale it may be (`X-Stockflow-Replica-Lag-Ms`);
 * - `X-Stockflow-Read-From: primary | replica` says which served it. A replica that cannot serve
 *   (away, or a query cancelled by a conflict with its replay) hands the read to the primary.
 * Without a replica none of these headers is sent and every read goes to the primary.
 */

const lsnHeader = 'X-Stockflow-LSN';
const readFromHeader = 'X-Stockflow-Read-From';
const lagHeader = 'X-Stockflow-Replica-Lag-Ms';

const lsnSchema = z
  .string()
  .refine(isLsn, 'must be a WAL position such as 16/B374D848, as sent in X-Stockflow-LSN')
  .meta({
    description:
      'The X-Stockflow-LSN of an answer to one of your writes: the read then shows that write (served by the primary if the replica has not replayed it yet)',
  });

/** The `?lsn=` parameter of every read that may lag (spread into its querystring schema). */
export const lsnQuery = { lsn: lsnSchema.optional() };
/** The `X-Stockflow-LSN` request header of every read that may lag. */
export const lsnHeaders = z.object({ 'x-stockflow-lsn': lsnSchema.optional() });

/**
 * The position the caller sent back (the header wins over `?lsn=`). The route's schemas refused a
 * malformed one already; a route without them gets the same 400 here, never a read that ignores it.
 */
function wantedPosition(request: FastifyRequest): string | undefined {
  const header = request.headers['x-stockflow-lsn'];
  const sent = header ?? (request.query as { lsn?: string } | undefined)?.lsn;
  if (sent === undefined || (typeof sent === 'string' && isLsn(sent))) return sent;
  throw new HttpProblem(400, 'validation_failed', 'The request has 1 invalid field(s)', {
    errors: [
      { in: 'headers', path: 'x-stockflow-lsn', message: 'must be a WAL position such as 16/B374D848' },
    ],
  });
}

/** How stale an answer read at `position` may be now: its lag plus the time since it was read. */
export function stalenessMs(position: ReplicaPosition & { lagMs: number }, now = Date.now()): number {
  return position.lagMs + Math.max(0, now - position.readAt);
}

/** A read that sends no position is served by the replica only when it can say how stale it may be. */
const knownLag = (at: ReplicaPosition | undefined) => (at?.lagMs === undefined ? undefined : at);

/** Errors after which the primary serves the read: the replica is away, or replay cancelled the query. */
function replicaCannotServe(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  // 40001: "canceling statement due to conflict with recovery" (a hot standby's replay won).
  return isServiceUnavailable(error) || code === '40001';
}

/** Runs the read on the replica at `at`, or on the primary when there is none or the replica fails. */
async function serve<T>(
  deps: ApiDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  at: ReplicaPosition | undefined,
  onReplica: (db: Db) => Promise<T>,
  onPrimary: (db: Db) => Promise<T>,
): Promise<T> {
  const replica = deps.replica!;
  if (at) {
    try {
      const result = await onReplica(replica.db);
      reply.header(readFromHeader, 'replica');
      if (at.lagMs !== undefined) reply.header(lagHeader, String(stalenessMs({ ...at, lagMs: at.lagMs })));
      return result;
    } catch (error) {
      if (!replicaCannotServe(error)) throw error;
      request.log.warn({ err: error }, 'the Postgres replica could not serve a read: the primary serves it');
      replica.tracker.failed();
    }
  }
  reply.header(readFromHeader, 'primary');
  return onPrimary(deps.db);
}

/** A read that may lag (a list, the ledger): on the replica when it may, as the module comment says. */
export async function readMayLag<T>(
  deps: ApiDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  read: (db: Db) => Promise<T>,
): Promise<T> {
  if (!deps.replica) return read(deps.db);
  const wanted = wantedPosition(request);
  const { tracker } = deps.replica;
  const at = wanted === undefined ? knownLag(await tracker.position()) : await tracker.reached(wanted);
  return serve(deps, request, reply, at, read, read);
}

/**
 * The event feed's read: `horizon` was just proven on the primary. On the replica it pages up to a
 * horizon the replica is known to hold whole (src/events/horizon-positions.ts): with the caller's
 * position, this one once the replica has replayed past the position read after its proof; without,
 * the newest recorded one the replica has replayed past (an older, smaller page: it may lag).
 */
export async function readFeedMayLag<T>(
  deps: ApiDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  horizon: number,
  read: (db: Db, horizon: number) => Promise<T>,
): Promise<T> {
  if (!deps.replica) return read(deps.db, horizon);
  const wanted = wantedPosition(request);
  const { tracker, horizons } = deps.replica;
  // Read after the proof: at or past the commit of every event up to the horizon, and of any write
  // whose position the caller sent.
  const proven = await readWalPosition(deps.db);
  horizons.record(horizon, proven);
  let at: ReplicaPosition | undefined;
  let held = horizon;
  if (wanted !== undefined) {
    at = await tracker.reached(proven);
  } else {
    at = knownLag(await tracker.position());
    const covered = at && horizons.coveredBy(at.replayed);
    if (covered === undefined) at = undefined;
    else held = covered;
  }
  return serve(
    deps,
    request,
    reply,
    at,
    (db) => read(db, held),
    (db) => read(db, horizon),
  );
}

/** Sets X-Stockflow-LSN to the primary's position now (after the caller's commit); none without a replica. */
export async function sendCommitPosition(deps: ApiDeps, request: FastifyRequest, reply: FastifyReply) {
  if (!deps.replica) return;
  try {
    reply.header(lsnHeader, await readWalPosition(deps.db));
  } catch (error) {
    // The write is done; only its position is missing, and a read without it may lag.
    request.log.warn({ err: error }, 'could not read the WAL position for X-Stockflow-LSN');
  }
}

const readMethods = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * X-Stockflow-LSN on every 2xx answer to a mutation of /api but a 202 (whose job has not run yet):
 * the API's own writes, and `Prefer: wait` outcomes, whose job has committed before the answer.
 */
export function registerCommitPositions(app: FastifyInstance, deps: ApiDeps): void {
  if (!deps.replica) return;
  app.addHook('onSend', async (request, reply, payload) => {
    const status = reply.statusCode;
    const written = status >= 200 && status < 300 && status !== 202;
    if (written && !readMethods.has(request.method) && request.routeOptions.url?.startsWith('/api/'))
      await sendCommitPosition(deps, request, reply);
    return payload;
  });
}
