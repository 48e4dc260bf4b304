import { parseArgs } from 'node:util';
import { parseConfig } from '../src/config.js';
import { openPostgres } from '../src/connections.js';
import { runEntry } from '../src/entry.js';
import { ReplayRangeError } from '../src/errors/replay-range-error.js';
import { replayProjections } from '../src/events/replay.js';

const usage = 'usage: npm run replay -- --from <seq> [--keep] [--json]';

/**
 * `npm run replay -- --from <seq>`: rebuilds the projections from the event log into a scratch
 * schema and lists how they differ from the live tables. Exits 1 when they differ, 2 on bad usage.
 */
runEntry(async () => {
  const { values } = parseArgs({
    options: { from: { type: 'string' }, keep: { type: 'boolean' }, json: { type: 'boolean' } },
  });
  const from = Number(values.from ?? '1');
  if (!Number.isSafeInteger(from) || from < 1) {
    console.error(`--from must be a seq of 1 or more\n${usage}`);
    process.exitCode = 2;
    return;
  }
  const db = await openPostgres(parseConfig());
  try {
    const report = await replayProjections(db, { from, keep: values.keep });
    const differences = report.projections.reduce((n, p) => n + p.differences.length, 0);
    if (values.json) {
      console.log(JSON.stringify(report, null, 2));
    } else {
      console.log(
        `replayed ${report.events} events (seq ${report.from}..${report.through})${report.complete ? ', the whole log' : ''}` +
          (values.keep ? ` into schema ${report.schema}` : ''),
      );
      for (const p of report.projections) {
        console.log(
          `  ${p.name}: ${p.events} events, ${p.skipped} unreadable, ${p.differences.length} difference(s)`,
        );
        for (const d of p.differences.slice(0, 50)) {
          const fields = d.fields?.map(
            (f) => `${f.field}: live ${JSON.stringify(f.live)} / replayed ${JSON.stringify(f.replayed)}`,
          );
          console.log(`    ${d.kind} ${d.key}${fields ? ` (${fields.join('; ')})` : ''}`);
        }
        if (p.differences.length > 50)
          console.log(`    … and ${p.differences.length - 50} more (use --json)`);
      }
    }
    process.exitCode = differences > 0 ? 1 : 0;
  } catch (error) {
    if (error instanceof ReplayRangeError) {
      console.error(error.message);
      process.exitCode = 2;
      return;
    }
    throw error;
  } finally {
    await db.destroy();
  }
});
