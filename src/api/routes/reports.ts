import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Knex } from 'knex';
import { reports } from '../../reports/catalogue.js';
import { csvStream } from '../../reports/csv.js';
import { limitParam } from '../../reports/params.js';
import type { KeyPart, ReportDefinition } from '../../reports/report.js';
import type { ApiDeps } from '../deps.js';

/** What an answer reflects: the instant its snapshot was taken and the newest ledger row it sees. */
async function asOfPosition(trx: Knex): Promise<{ at: string; movementId: number }> {
  const { rows } = await trx.raw<{ rows: { at: Date; movement_id: number | null }[] }>(
    `select now() as at, (select max(id) from stock_movements) as movement_id`,
  );
  return { at: rows[0]!.at.toISOString(), movementId: rows[0]!.movement_id ?? 0 };
}

/**
 * A report reads rollups and pending rows in one snapshot, so a movement is counted once; its
 * aggregates get more memory than a request's default so they do not spill to disk.
 */
async function openSnapshot(db: Knex): Promise<Knex.Transaction> {
  const trx = await db.transaction({ isolationLevel: 'repeatable read', readOnly: true });
  await trx.raw(`set local work_mem = '32MB'`);
  return trx;
}

const wantsCsv = (accept: string | undefined) => /\btext\/csv\b/i.test(accept ?? '');

async function answer(
  db: Knex,
  report: ReportDefinition,
  query: Record<string, unknown> & { cursor?: KeyPart[]; limit: number },
  reply: FastifyReply,
  csv: boolean,
) {
  const trx = await openSnapshot(db);
  try {
    const asOf = await asOfPosition(trx);
    const { cursor, limit, ...params } = query;
    const { rows, summary } = await report.run(trx, params, {
      after: cursor,
      limit: csv ? undefined : limit + 1,
    });
    if (csv) {
      const stream = csvStream(report.columns, rows);
      let finished = false;
      const done = async (error?: Error | null) => {
        if (finished) return;
        finished = true;
        await (error ? trx.rollback() : trx.commit()).catch(() => undefined);
      };
      stream.once('end', () => void done());
      stream.once('error', (error) => void done(error));
      // A client that goes away ends the read: the cursor's transaction must not stay open.
      reply.raw.once('close', () => {
        if (!stream.readableEnded) stream.destroy();
        void done(new Error('closed'));
      });
      return reply
        .header('Content-Type', 'text/csv; charset=utf-8; header=present')
        .header('Content-Disposition', `attachment; filename="${report.name}-${asOf.at.slice(0, 10)}.csv"`)
        .header('X-Stockflow-As-Of', `${asOf.at}; movement=${asOf.movementId}`)
        .send(stream);
    }
    const items: unknown[] = [];
    for await (const batch of rows) {
      items.push(...batch);
      if (items.length > limit) break;
    }
    await trx.commit();
    const page = items.slice(0, limit);
    const last = page[page.length - 1];
    return {
      report: report.name,
      asOf,
      ...summary,
      items: page,
      nextCursor: items.length > limit && last ? report.cursor.encode(report.key(last as never)) : null,
    };
  } catch (error) {
    await trx.rollback().catch(() => undefined);
    throw error;
  }
}

/**
 * Reports (docs/reports.md): one GET route per report of the catalogue, JSON by default and CSV
 * with `Accept: text/csv`, and the list of them with each one's formula and edge rules.
 */
export function registerReportRoutes(root: FastifyInstance, deps: ApiDeps): void {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const tags = ['reports'];

  app.get(
    '/api/pms/reports',
    {
      config: { scope: 'pms' },
      schema: { tags, summary: 'Every report, with its parameters, formula, edge rules and CSV columns' },
    },
    async () => ({
      items: reports.map((r) => ({
        name: r.name,
        href: `/api/pms/reports/${r.name}`,
        summary: r.summary,
        formula: r.formula,
        edgeRules: r.edgeRules,
        parameters: [...Object.keys(r.query.shape), 'cursor', 'limit'],
        formats: ['application/json', 'text/csv'],
        columns: r.columns.map((c) => c.name),
      })),
    }),
  );

  for (const report of reports) {
    const querystring = report.query
      .extend({ cursor: report.cursor.schema.optional(), limit: limitParam })
      .superRefine((q, ctx) => report.check?.(q, ctx));
    app.get(
      `/api/pms/reports/${report.name}`,
      {
        config: { scope: 'pms' },
        schema: {
          tags,
          summary: `${report.summary} (JSON, or CSV with Accept: text/csv)`,
          description: `${report.formula}\n\n${report.edgeRules.map((r) => `- ${r}`).join('\n')}`,
          querystring,
        },
      },
      (request, reply) =>
        answer(
          deps.db,
          report,
          request.query as Record<string, unknown> & { cursor?: KeyPart[]; limit: number },
          reply,
          wantsCsv(request.headers.accept),
        ),
    );
  }
}
