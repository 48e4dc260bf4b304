import type { Knex } from 'knex';
import type { z } from 'zod';

export type KeyPart = string | number;

/** A column of a report's rows, in CSV order. `text` columns get formula escaping in CSV. */
export interface Column<Row> {
  name: string;
  value: (row: Row) => string | number | boolean | null;
  text?: boolean;
}

/** What a report answers besides its rows: totals, windows, rates (JSON only). */
export type Summary = Record<string, unknown>;

/**
 * One report, declared once: the route, the listing at GET /api/pms/reports, the CSV export and
 * docs/reports.md all come from this.
 */
export interface ReportDefinition<Q extends z.ZodObject = z.ZodObject, Row = Record<string, unknown>> {
  name: string;
  summary: string;
  /** How each figure is computed. */
  formula: string;
  /** What happens at the edges (no sales, zero units, negative stock, empty windows…). */
  edgeRules: string[];
  /** Query parameters (cursor and limit are added by the route). */
  query: Q;
  /** Checks across parameters (a window's from before its to). */
  check?: (query: z.output<Q>, ctx: z.RefinementCtx) => void;
  /** The keyset cursor codec of this report (its rows' sort key). */
  cursor: { encode(key: KeyPart[]): string; schema: z.ZodType<KeyPart[], string> };
  key: (row: Row) => KeyPart[];
  columns: Column<Row>[];
  /**
   * The answer: its rows after `after` (in key order), in batches, and its summary. `limit` is how
   * many rows the caller needs at least (a JSON page), undefined for all of them (a CSV export).
   */
  run(
    db: Knex,
    query: z.output<Q>,
    page: { after?: KeyPart[]; limit?: number },
  ): Promise<{ rows: AsyncIterable<Row[]>; summary?: Summary }>;
}

/** Keeps a report's types together (`defineReport({...})` infers Q and Row). */
export const defineReport = <Q extends z.ZodObject, Row>(report: ReportDefinition<Q, Row>) =>
  report as unknown as ReportDefinition;

const compareKeys = (a: KeyPart[], b: KeyPart[]): number => {
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x < y) return -1;
    if (x > y) return 1;
  }
  return 0;
};

/**
 * Rows computed whole (reports over at most a few hundred thousand rows), served in key order after
 * `after`. Rows already in key order (`sorted`) are not sorted again; `show` turns a row into what
 * is served, batch by batch, so a JSON page shapes only its own rows.
 */
export async function* inMemoryRows<Row, Shown = Row>(
  all: Row[],
  key: (row: Row) => KeyPart[],
  after: KeyPart[] | undefined,
  options: { sorted?: boolean; show?: (row: Row) => Shown } = {},
): AsyncIterable<Shown[]> {
  const batch = 5000;
  const sorted = options.sorted
    ? all
    : all
        .map((row) => ({ row, k: key(row) }))
        .sort((a, b) => compareKeys(a.k, b.k))
        .map((r) => r.row);
  let start = 0;
  if (after) {
    // Binary search: the first row after the cursor.
    let high = sorted.length;
    while (start < high) {
      const middle = (start + high) >> 1;
      if (compareKeys(key(sorted[middle]!), after) > 0) high = middle;
      else start = middle + 1;
    }
  }
  const show = options.show ?? ((row: Row) => row as unknown as Shown);
  for (let i = start; i < sorted.length; i += batch) yield sorted.slice(i, i + batch).map(show);
}

/**
 * Rows of one SQL query in key order through a server-side cursor (DECLARE … FETCH), so a large
 * export never holds more than one batch. Needs a transaction (`db` is one).
 */
export async function* cursorRows<T>(
  db: Knex,
  sql: string,
  bindings: Knex.RawBinding[],
  batch = 5000,
): AsyncIterable<T[]> {
  const name = `report_${Math.random().toString(36).slice(2, 10)}`;
  await db.raw(`declare ${name} no scroll cursor for ${sql}`, bindings);
  try {
    for (;;) {
      const { rows } = await db.raw<{ rows: T[] }>(`fetch ${batch} from ${name}`);
      if (rows.length > 0) yield rows;
      if (rows.length < batch) return;
    }
  } finally {
    await db.raw(`close ${name}`);
  }
}
