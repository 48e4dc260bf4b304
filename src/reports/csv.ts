import { Readable } from 'node:stream';
import { stringify } from 'csv-stringify/sync';
import type { Column } from './report.js';

/** Characters that make a spreadsheet read a cell as a formula (OWASP CSV injection). */
const formulaStart = /^[=+\-@\t\r]/;

/** A text cell that a spreadsheet would run as a formula gets a leading apostrophe; numbers never do. */
export const escapeFormula = (text: string): string => (formulaStart.test(text) ? `'${text}` : text);

function cell<Row>(column: Column<Row>, row: Row): string | number {
  const value = column.value(row);
  if (value === null) return '';
  if (typeof value === 'boolean') return String(value);
  return column.text && typeof value === 'string' ? escapeFormula(value) : value;
}

/**
 * CSV (RFC 4180: CRLF, quoted where needed, a header row) of batches of rows, as a stream that
 * pulls the next batch only when the client has taken the last: the header goes out before the
 * first batch is read, and memory holds one batch.
 */
export function csvStream<Row>(columns: Column<Row>[], batches: AsyncIterable<Row[]>): Readable {
  const options = { record_delimiter: 'windows' as const };
  async function* lines() {
    yield stringify([columns.map((c) => c.name)], options);
    for await (const batch of batches) {
      yield stringify(
        batch.map((row) => columns.map((c) => cell(c, row))),
        options,
      );
    }
  }
  return Readable.from(lines(), { objectMode: false });
}
