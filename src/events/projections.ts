import type { Knex } from 'knex';
import type { LogEvent } from '../schemas/events.js';

/**
 * A projection is state derived from the log: the replay (src/events/replay.ts) rebuilds it into a
 * scratch schema and compares it with the live table. Each projection is one small unit listed in
 * `projections` of src/events/replay.ts; another module (inventory levels from the stock ledger,
 * say) adds itself with one line there. This file is the contract alone, so the projections
 * import it and nothing imports them back.
 */
export interface Projection {
  /** Its name in reports, and the name of its scratch table. */
  name: string;
  /** Event types it is rebuilt from (patterns). Empty when it rebuilds from elsewhere (a ledger) in `prepare`. */
  eventTypes: readonly string[];
  /** Creates its scratch table(s) in `schema`; may fill them from another source. */
  prepare(db: Knex, schema: string, scope: ReplayScope): Promise<void>;
  /** Applies a page of its events, in seq order. */
  apply(db: Knex, schema: string, events: LogEvent[]): Promise<{ skipped: number }>;
  /** How the rebuilt state differs from the live one. */
  diff(db: Knex, schema: string, scope: ReplayScope): Promise<ProjectionDifference[]>;
}

export interface ReplayScope {
  /** First seq replayed. */
  from: number;
  /** True when the replay starts at the beginning of an unpruned log: live rows without events are errors too. */
  complete: boolean;
}

export interface ProjectionDifference {
  key: string;
  /** missing_live: rebuilt but not in the live table; missing_replayed: live row no event explains; changed: fields differ. */
  kind: 'missing_live' | 'missing_replayed' | 'changed';
  fields?: { field: string; live: unknown; replayed: unknown }[];
}
