import { parseLsn } from '../db/wal-position.js';

/**
 * The stable horizons this process proved on the primary (src/events/horizon.ts), each paired with
 * the primary's WAL position read after its proof ended. A replica that has replayed up to that
 * position holds every event up to that horizon, each final, so a feed read there may page up to
 * it and skip nothing; the horizon itself cannot be proven on a replica (its sequence runs ahead
 * and its pg_locks do not show the primary's writers).
 */
export interface HorizonPositions {
  /** `lsn`: the primary's position (`16/B374D848`) read after `horizon` was proven. */
  record(horizon: number, lsn: string): void;
  /** The newest recorded horizon that a replica replayed up to `replayed` holds; undefined: none. */
  coveredBy(replayed: bigint): number | undefined;
}

interface Pair {
  horizon: number;
  lsn: bigint;
  at: number;
}

/**
 * Keeps pairs at least `spacingMs` apart (the newest replaced until then) for `keepMs`: a replica
 * lagging by up to `keepMs` still finds a horizon at most `spacingMs` older than the best one.
 */
export function createHorizonPositions(
  options: { spacingMs?: number; keepMs?: number; now?: () => number } = {},
): HorizonPositions {
  const { spacingMs = 50, keepMs = 60_000, now = Date.now } = options;
  const pairs: Pair[] = [];
  return {
    record(horizon, text) {
      const lsn = parseLsn(text);
      const at = now();
      const last = pairs.at(-1);
      // Proofs that end out of order give a pair no better than the last: a newer position for the
      // same horizon, or an older horizon at all.
      if (last && (horizon <= last.horizon || lsn < last.lsn)) return;
      const before = pairs.at(-2);
      if (last && before && at - before.at < spacingMs) pairs[pairs.length - 1] = { horizon, lsn, at };
      else pairs.push({ horizon, lsn, at });
      while (pairs.length > 1 && at - pairs[0]!.at > keepMs) pairs.shift();
    },
    coveredBy(replayed) {
      for (let i = pairs.length - 1; i >= 0; i--) if (pairs[i]!.lsn <= replayed) return pairs[i]!.horizon;
      return undefined;
    },
  };
}
